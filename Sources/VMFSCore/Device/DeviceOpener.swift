/// Opens the device a tool or daemon was given: an image file or block device node, or an
/// iSCSI LUN (`iscsi://[user[%password]@]host[:port]/target-iqn/lun`). Every place that takes a
/// device path opens it here.
public enum DeviceOpener {
    /// Opens `path` read-write or read-only.
    ///
    /// - Parameter directIO: For files and block devices: use `O_DIRECT` where possible.
    /// - Throws: ``VMFSError`` naming the path, portal, target or LUN that could not be opened.
    public static func open(_ path: String, readOnly: Bool = false, directIO: Bool = true) throws(VMFSError) -> any BlockDevice {
        if ISCSIAddress.isISCSI(path) {
            return try ISCSIBlockDevice(url: path, readOnly: readOnly)
        }
        return try FileBlockDevice(path: path, readOnly: readOnly, directIO: directIO)
    }

    /// The path as it may be shown: an iSCSI URL loses its password.
    public static func displayName(_ path: String) -> String {
        guard ISCSIAddress.isISCSI(path), let address = try? ISCSIAddress(parsing: path) else { return ISCSIAddress.redacted(path) }
        return address.description
    }
}
