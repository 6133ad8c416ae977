internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// The maximum file size (256 TiB) at the kernel boundary.
///
/// FUSE has no way to tell the kernel a filesystem's maximum file size (`s_maxbytes` is
/// 2^63 − 1 for every FUSE mount), so the daemon refuses what crosses it wherever a request
/// reaches it first: WRITE (without the writeback cache, or `O_DIRECT`), SETATTR of the size,
/// FALLOCATE and COPY_FILE_RANGE fail at once with `EFBIG`. A buffered write under the
/// writeback cache is accepted into the kernel's cache without asking; its write-back is
/// refused with `EFBIG` (reported by `fsync` and `close`), and the file is marked so that the
/// next lookup after the last close gives the kernel a fresh inode with the real size.
extension FileSystem {
    /// COPY_FILE_RANGE: refused with `EFBIG` when the destination range ends past the maximum
    /// file size; otherwise answered `EOPNOTSUPP`, on which the kernel copies through its page
    /// cache (READ and WRITE) as it would without this operation.
    func copyFileRange(_ request: Request, offsetIn: off_t, infoIn: UnsafeMutablePointer<fuse_file_info>?,
                       offsetOut: off_t, infoOut: UnsafeMutablePointer<fuse_file_info>?, length: Int) {
        request.answer("copy_file_range") { () throws(VMFSError) in
            let destination = try openHandle(infoOut)
            _ = try openHandle(infoIn)
            guard destination.writable else { throw VMFSError(.permissionDenied, "the destination is not open for writing") }
            guard offsetIn >= 0, offsetOut >= 0 else { throw VMFSError(.invalidArgument, "negative copy offset") }
            let limit = volume.header.layout.maxFileSize
            // The kernel's length is a `size_t`, imported as `Int`: read it back unsigned.
            let count = UInt64(UInt(bitPattern: length))
            let (end, overflow) = UInt64(offsetOut).addingReportingOverflow(count)
            guard !overflow, end <= limit else {
                throw VMFSError(.fileTooLarge, "copying \(count) bytes to offset \(offsetOut) ends past the maximum file size "
                                + "of \(limit) bytes")
            }
            request.reply(error: EOPNOTSUPP)
        }
    }

    /// After a WRITE of `open` failed: under the writeback cache the kernel already took the data
    /// (and the size it implies), so its inode no longer matches the file.
    func writeFailed(_ open: OpenHandle) {
        if configuration.writebackCache { inodes.diverged(slot: open.slot) }
    }
}
