internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// LSEEK with `SEEK_DATA` and `SEEK_HOLE` (the kernel answers the other kinds itself), so that
/// sparse-aware copiers (`cp`, `qemu-img convert`) skip holes instead of reading zeros.
///
/// Preallocated blocks never written count as holes. While this host has the file open for
/// writing, the kernel may hold written data the daemon has not seen yet (writeback cache,
/// shared mappings) and does not write it back before asking, so the answer is then the safe
/// one: all data up to the end of the file.
extension FileSystem {
    func lseek(_ request: Request, offset: off_t, whence: Int32, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("lseek") { () throws(VMFSError) in
            let open = try openHandle(info)
            guard offset >= 0 else { throw VMFSError(.invalidArgument, "negative offset \(offset)") }
            let position = UInt64(offset)
            let mayHaveUnseenData = slots.counts(open.slot).writers > 0
            switch whence {
            case LinuxConstants.seekData where mayHaveUnseenData:
                guard position < open.handle.size else {
                    request.reply(error: ENXIO)
                    return
                }
                fuse_reply_lseek(request.raw, off_t(clamping: position))
            case LinuxConstants.seekHole where mayHaveUnseenData:
                guard position < open.handle.size else {
                    request.reply(error: ENXIO)
                    return
                }
                fuse_reply_lseek(request.raw, off_t(clamping: open.handle.size))
            case LinuxConstants.seekData:
                guard let data = try open.handle.nextData(from: position) else {
                    request.reply(error: ENXIO)
                    return
                }
                fuse_reply_lseek(request.raw, off_t(clamping: data))
            case LinuxConstants.seekHole:
                guard position < open.handle.size else {
                    request.reply(error: ENXIO)
                    return
                }
                fuse_reply_lseek(request.raw, off_t(clamping: try open.handle.nextHole(from: position)))
            default:
                throw VMFSError(.invalidArgument, "lseek whence \(whence) is handled by the kernel")
            }
        }
    }
}
