/// fsck: the volume header and its backup copy.
extension VolumeChecker {
    // MARK: Header

    func checkHeader() throws(VMFSError) -> Bool {
        progress?("volume header", 0)
        guard device.size >= UInt64(2 * sectorSize) else {
            report.operationalError = "\(device.path) is \(device.size) bytes: too small to hold a VMFS volume"
            return false
        }
        let primaryBytes = try device.read(count: sectorSize, at: 0)
        let backupOffset = (device.size / UInt64(sectorSize) - 1) * UInt64(sectorSize)
        do {
            header = try VolumeHeader.decode(primaryBytes, offset: 0, device: device.path)
        } catch {
            if let backup = try? VolumeHeader.decode(try device.read(count: sectorSize, at: backupOffset), offset: backupOffset) {
                header = backup
                try problem("volume header", offset: error.location?.offset ?? 0, "\(error.message); the backup header is intact") {
                    () throws(VMFSError) in try device.write(bytes: backup.encoded(), at: 0)
                }
            } else if error.code == .notVMFS || error.code == .futureVersion {
                report.operationalError = error.description
                return false
            } else {
                report.problems.append(CheckReport.Problem(structure: "volume header", offset: error.location?.offset ?? 0,
                                                           message: "\(error.message), and no valid backup header was found", repaired: false))
                return false
            }
        }
        guard device.size >= layout.deviceSize else {
            report.problems.append(CheckReport.Problem(
                structure: "device", offset: device.size,
                message: "the device is \(device.size) bytes but the volume was made for \(layout.deviceSize) bytes: it is truncated",
                repaired: false))
            return false
        }
        let backupBytes = try device.read(count: sectorSize, at: layout.backupHeaderOffset)
        if backupBytes != header.encoded() {
            let reason = (try? VolumeHeader.decode(backupBytes, offset: layout.backupHeaderOffset)) == nil
                ? "is missing or corrupt" : "differs from the primary header"
            let image = header.encoded()
            try problem("backup volume header", offset: layout.backupHeaderOffset, "the backup volume header \(reason)") { () throws(VMFSError) in
                try device.write(bytes: image, at: layout.backupHeaderOffset)
            }
        }
        return true
    }
}
