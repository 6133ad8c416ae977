internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// GETATTR and SETATTR: `stat`, `chmod`, `chown`, `utimensat` and `truncate`.
extension FileSystem {
    func getattr(_ request: Request, inode: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("getattr") { () throws(VMFSError) in
            if inode == InodeTable.root {
                request.reply(attributes: rootAttributes, timeout: 1.0)
                return
            }
            let status: FileStatus
            if let info, let open = OpenHandle.borrowed(info.pointee.fh), open.inode == inode {
                status = open.handle.heldStatus
            } else {
                let (slot, generation) = try inodes.file(inode)
                status = try volume.status(slot: slot, generation: generation)
            }
            request.reply(attributes: Attributes.stat(of: status, blockSize: blockSize), timeout: attributeTimeout(slot: status.slot))
        }
    }

    /// Changes attributes. Through a handle open for writing the change needs nothing more;
    /// otherwise the file is opened for writing for the change, which takes its exclusive
    /// lock: `EBUSY` while another host has the file open.
    func setattr(_ request: Request, inode: fuse_ino_t, attributes: UnsafeMutablePointer<stat>?, toSet: Int32,
                 info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("setattr") { () throws(VMFSError) in
            guard inode != InodeTable.root else {
                throw VMFSError(.permissionDenied, "the root directory's attributes are fixed")
            }
            guard let attributes else { throw VMFSError(.invalidArgument, "setattr without attributes") }
            if configuration.readOnly { throw VMFSError(.readOnly, "the volume is mounted read-only") }
            let changes = Self.changes(attributes.pointee, toSet: toSet)
            let status: FileStatus
            if let info, let open = OpenHandle.borrowed(info.pointee.fh), open.writable, open.inode == inode {
                try slots.withWriteLock(open.slot, exclusive: true) { () throws(VMFSError) in
                    try open.handle.setAttributes(changes)
                }
                open.dirty.store(true, ordering: .releasing)
                status = open.handle.heldStatus
            } else {
                let (slot, generation) = try inodes.file(inode)
                status = try slots.withOpenCloseLock(slot) { () throws(VMFSError) -> FileStatus in
                    let handle = try volume.open(slot: slot, generation: generation, access: .readWrite)
                    do throws(VMFSError) {
                        try slots.withWriteLock(slot, exclusive: true) { () throws(VMFSError) in try handle.setAttributes(changes) }
                        let status = try handle.status()
                        try handle.close()
                        return status
                    } catch {
                        try? handle.close()
                        throw error
                    }
                }
            }
            request.reply(attributes: Attributes.stat(of: status, blockSize: blockSize), timeout: attributeTimeout(slot: status.slot))
        }
    }

    /// The VMFS attribute changes a SETATTR asks for.
    static func changes(_ attributes: stat, toSet: Int32) -> AttributeChanges {
        var changes = AttributeChanges()
        if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = UInt32(attributes.st_mode) & 0o7777 }
        if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = UInt32(attributes.st_uid) }
        if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = UInt32(attributes.st_gid) }
        if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = UInt64(max(0, attributes.st_size)) }
        if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 {
            changes.accessTime = now
        } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
            changes.accessTime = attributes.st_atim.nanoseconds
        }
        if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
            changes.modificationTime = now
        } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
            changes.modificationTime = attributes.st_mtim.nanoseconds
        }
        return changes
    }
}
