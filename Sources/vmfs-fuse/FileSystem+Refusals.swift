internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// What a flat VMFS volume cannot hold: directories, special files, symbolic and hard links.
/// Each is refused with `EPERM` and a message saying why (in the daemon's log with `-d`).
extension FileSystem {
    func refuse(_ request: Request, _ operation: StaticString, _ what: String) {
        request.answer(operation) { () throws(VMFSError) in
            throw VMFSError(.permissionDenied, "cannot create \(what): a VMFS volume holds only regular files in one directory")
        }
    }

    /// RMDIR: there are no directories to remove (`ENOTDIR` for a file, `ENOENT` otherwise).
    func rmdir(_ request: Request, parent: fuse_ino_t, name raw: UnsafePointer<CChar>?) {
        guard parent == InodeTable.root, let name = try? Self.name(raw), (try? volume.status(of: name)) != nil else {
            request.reply(error: ENOENT)
            return
        }
        request.reply(error: ENOTDIR)
    }
}
