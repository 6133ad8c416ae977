#if canImport(Glibc)
internal import Glibc
#endif
internal import Synchronization

/// An owned file descriptor that is closed exactly once, when ``close()`` is called or the
/// owner is deallocated.
final class OwnedFileDescriptor: Sendable {
    private let state: Atomic<Int32>

    /// The descriptor number, or -1 once closed.
    var rawValue: Int32 { state.load(ordering: .acquiring) }

    init(_ rawValue: Int32) { state = Atomic(rawValue) }

    /// Closes the descriptor if it is still open.
    func close() {
        let value = state.exchange(-1, ordering: .acquiringAndReleasing)
        if value >= 0 { _ = Glibc.close(value) }
    }

    deinit { close() }
}

/// Calls an ioctl-like function until it does not fail with `EINTR`, turning a negative result
/// into a ``HypervisorError``.
@discardableResult
func checkedIoctl(_ what: @autoclosure () -> String, _ body: () -> Int32) throws(HypervisorError) -> Int32 {
    while true {
        let result = body()
        if result >= 0 { return result }
        let error = errno
        if error == EINTR { continue }
        throw .systemCall(what(), errno: error)
    }
}
