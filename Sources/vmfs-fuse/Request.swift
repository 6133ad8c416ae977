internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// One FUSE request, answered exactly once with one of the `reply` methods.
///
/// `fuse_req_t` is an opaque pointer (not `Sendable`); libfuse allows a request to be answered
/// from any thread, exactly once, which is the contract this wrapper states.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t

    /// The filesystem the session was created with.
    var fileSystem: FileSystem {
        Unmanaged<FileSystem>.fromOpaque(fuse_req_userdata(raw)).takeUnretainedValue()
    }

    /// The user and group of the process that made the request.
    var caller: (uid: UInt32, gid: UInt32, pid: Int32) {
        guard let context = fuse_req_ctx(raw) else { return (0, 0, 0) }
        return (context.pointee.uid, context.pointee.gid, context.pointee.pid)
    }

    func reply(error code: Int32) {
        fuse_reply_err(raw, code)
    }

    func reply(entry: fuse_entry_param) {
        var entry = entry
        fuse_reply_entry(raw, &entry)
    }

    func reply(attributes: stat, timeout: Double) {
        var attributes = attributes
        fuse_reply_attr(raw, &attributes, timeout)
    }

    func reply(buffer: UnsafeRawPointer?, count: Int) {
        fuse_reply_buf(raw, buffer?.assumingMemoryBound(to: CChar.self), count)
    }

    func reply(written count: Int) {
        fuse_reply_write(raw, count)
    }

    func reply(statfs: statvfs) {
        var statfs = statfs
        fuse_reply_statfs(raw, &statfs)
    }

    /// Runs `body`; a thrown error becomes the reply, logged when it matters to an operator.
    ///
    /// `body` must answer the request itself when it succeeds.
    func answer(_ operation: StaticString, _ body: () throws(VMFSError) -> Void) {
        do {
            try body()
        } catch {
            if error.location?.structure != Self.expectedStructure { Log.requestFailed(String(describing: operation), error) }
            reply(error: error.code.errno)
        }
    }

    /// Marks errors that are part of normal operation (an OPEN of an outdated kernel inode,
    /// answered `ESTALE` so the kernel looks the name up again): not logged.
    static let expectedStructure = "kernel inode (expected, retried by the kernel)"
}
