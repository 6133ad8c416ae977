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
                request.reply(attributes: try rootAttributes(), timeout: Self.rootAttributeTimeout)
                return
            }
            let status: FileStatus
            if let info, let open = OpenHandle.borrowed(info.pointee.fh), open.inode == inode {
                status = open.handle.heldStatus
            } else {
                do throws(VMFSError) {
                    let (slot, generation) = try inodes.file(inode)
                    status = try volume.status(slot: slot, generation: generation)
                } catch where error.code == .staleHandle {
                    // The file was removed since the kernel looked it up (an open's permission
                    // check, a stat): the kernel looks the name up again and retries once, and
                    // that lookup locks what the name names by then (see ``lookup``).
                    // A refusal of the retry itself: the file is gone, as far as this call goes.
                    guard graces.expectRetry(pid: request.caller.pid, writable: false) else {
                        throw VMFSError(.notFound, "the file was removed while the kernel retried: \(error.message)")
                    }
                    throw VMFSError(.staleHandle, error.message, location: .init(structure: Request.expectedStructure))
                }
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
            guard let attributes else { throw VMFSError(.invalidArgument, "setattr without attributes") }
            if configuration.readOnly { throw VMFSError(.readOnly, "the volume is mounted read-only") }
            let changes = Self.changes(attributes.pointee, toSet: toSet)
            if inode == InodeTable.root {
                // chmod, chown and utimensat of the root: kept on the volume for every host. A
                // change-time-only write-back of the kernel has nothing to store.
                let directory = changes == AttributeChanges() ? try volume.directoryAttributes() : try volume.setDirectoryAttributes(changes)
                request.reply(attributes: Attributes.rootStat(directory, blockSize: blockSize), timeout: Self.rootAttributeTimeout)
                return
            }
            let status: FileStatus
            if let info, let open = OpenHandle.borrowed(info.pointee.fh), open.writable, open.inode == inode {
                try slots.withWriteLock(open.slot, exclusive: true) { () throws(VMFSError) in
                    try open.handle.setAttributes(changes)
                }
                open.dirty.store(true, ordering: .releasing)
                status = open.handle.heldStatus
            } else if toSet & ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME) == 0 && toSet & FUSE_SET_ATTR_CTIME != 0
                        && writeBacks.isWriteBack(from: request.caller.pid) {
                // The kernel's change-time stamp after this process's rename or unlink.
                guard let current = try? inodes.file(inode), let current = try? volume.status(slot: current.slot, generation: current.generation) else {
                    request.reply(attributes: Attributes.vanished(inode: inode, requested: attributes.pointee), timeout: 0)
                    return
                }
                status = current
            } else {
                guard let changed = try setWithoutHandle(inode: inode, changes: changes, requested: attributes.pointee, toSet: toSet) else {
                    request.reply(attributes: Attributes.vanished(inode: inode, requested: attributes.pointee), timeout: 0)
                    return
                }
                status = changed
            }
            request.reply(attributes: Attributes.stat(of: status, blockSize: blockSize), timeout: attributeTimeout(slot: status.slot))
        }
    }

    /// A SETATTR without a writable handle: the file is opened for writing for the change (its
    /// exclusive lock; a file unlinked while open here can be). Returns nil when the file no
    /// longer exists and only times were to change.
    ///
    /// With the writeback cache the kernel keeps a file's change time itself and writes it back
    /// at once after an unlink or rename (`fuse_update_ctime`); an error there would surface
    /// later as `EIO` from `close` or `syncfs`. Such a write that changes nothing else is
    /// answered from the file's attributes without taking its lock, and a time change for a
    /// file that no longer exists (the kernel writing back an inode of a removed file) succeeds
    /// with nothing to store.
    private func setWithoutHandle(inode: fuse_ino_t, changes: AttributeChanges, requested: stat,
                                  toSet: Int32) throws(VMFSError) -> FileStatus? {
        let onlyTimes = toSet & Self.nonTimeChanges == 0
        let slot: Int
        let generation: UInt32
        let current: FileStatus
        do throws(VMFSError) {
            (slot, generation) = try inodes.file(inode)
            current = try volume.status(slot: slot, generation: generation)
        } catch where onlyTimes && (error.code == .staleHandle || error.code == .notFound) {
            return nil
        }
        // The kernel writes back the modification time it has: the volume's, or the one it was
        // last told (another host may have changed the file since).
        let requestedModification = requested.st_mtim.nanoseconds
        let sameModification = toSet & FUSE_SET_ATTR_MTIME == 0 || requestedModification == current.modificationTime
            || requestedModification == inodes.toldModificationTime(slot: slot, generation: generation)
        if onlyTimes && toSet & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW) == 0 && sameModification {
            return current
        }
        do throws(VMFSError) {
            return try slots.withOpenCloseLock(slot) { () throws(VMFSError) -> FileStatus in
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
        } catch where onlyTimes && (error.code == .staleHandle || error.code == .notFound) {
            return nil
        }
    }

    /// SETATTR bits that change more than times.
    private static let nonTimeChanges = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE

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
