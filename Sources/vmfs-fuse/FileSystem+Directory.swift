internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// OPENDIR, READDIR, READDIRPLUS and RELEASEDIR of the root, the only directory.
///
/// A listing is read from the volume when a READDIR asks for offset 0 (the first read after
/// OPENDIR, or after `rewinddir`) and served from that snapshot at later offsets, so one pass
/// over the directory is consistent even while other hosts change names. Offsets are entry
/// indexes: 0 is `.`, 1 is `..`, 2 + i is the i-th file.
extension FileSystem {
    func opendir(_ request: Request, inode: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("opendir") { () throws(VMFSError) in
            try Self.requireRoot(inode)
            guard let info else { throw VMFSError(.invalidArgument, "opendir without file info") }
            let number = directories.insert(DirectorySnapshot([]))
            info.pointee.fh = number
            if fuse_reply_open(request.raw, info) != 0 { _ = directories.remove(number) }
        }
    }

    func releasedir(_ request: Request, info: UnsafeMutablePointer<fuse_file_info>?) {
        if let info { _ = directories.remove(info.pointee.fh) }
        request.reply(error: 0)
    }

    func readdir(_ request: Request, size: Int, offset: off_t, info: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
        request.answer(plus ? "readdirplus" : "readdir") { () throws(VMFSError) in
            guard let info, let snapshot = directories.value(info.pointee.fh) else {
                throw VMFSError(.invalidArgument, "unknown directory handle")
            }
            if offset == 0 {
                let listing = try volume.list()
                snapshot.files.withLock { $0 = listing }
            }
            let listing = snapshot.files.withLock { $0 }
            let root = try rootAttributes()
            var buffer = [CChar](repeating: 0, count: max(size, 0))
            var used = 0
            var index = max(Int(offset), 0)
            // One reply, also for a zero size (an empty array may still have a base address).
            buffer.withUnsafeMutableBufferPointer { out in
                guard let base = out.baseAddress, !out.isEmpty else {
                    request.reply(buffer: nil, count: 0)
                    return
                }
                while index < listing.count + 2 {
                    let name: String
                    var entry = fuse_entry_param()
                    if index < 2 {
                        name = index == 0 ? "." : ".."
                        entry.attr = root
                    } else {
                        let file = listing[index - 2]
                        name = file.name
                        // READDIRPLUS entries become kernel inodes like lookups; plain READDIR
                        // only shows the inode number and type.
                        if plus { entry = self.entry(for: file) } else { entry.attr = Attributes.stat(of: file, blockSize: blockSize) }
                    }
                    // Each call returns the space the entry needs and writes nothing when it
                    // does not fit: stop there, the kernel asks again from this offset.
                    let needed = plus
                        ? fuse_add_direntry_plus(request.raw, base + used, out.count - used, name, &entry, off_t(index + 1))
                        : fuse_add_direntry(request.raw, base + used, out.count - used, name, &entry.attr, off_t(index + 1))
                    if needed > out.count - used { break }
                    used += needed
                    index += 1
                }
                request.reply(buffer: base, count: used)
            }
        }
    }
}
