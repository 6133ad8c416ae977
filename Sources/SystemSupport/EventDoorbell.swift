internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// An `eventfd` one process rings and another waits on: the doorbell of a shared-memory queue.
///
/// Rings coalesce: however often it was rung, one ``wait(timeoutMilliseconds:)`` consumes them
/// all. Queues therefore ring only when the other side said it is going to sleep, and the waiter
/// looks at the queue again after every wake-up.
public final class EventDoorbell: Sendable {
    /// The eventfd (pass it to the other process).
    public let descriptor: OwnedDescriptor

    /// A new doorbell.
    public init() throws(SystemError) {
        let fd = cvmfs_eventfd(0, CVMFS_EFD_CLOEXEC | CVMFS_EFD_NONBLOCK)
        guard fd >= 0 else { throw SystemError("eventfd", errno: -fd, subject: "doorbell") }
        descriptor = OwnedDescriptor(fd)
    }

    /// A doorbell received from another process.
    public init(receiving received: OwnedDescriptor) throws(SystemError) {
        let flags = fcntl(received.rawValue, F_GETFL)
        guard flags >= 0, fcntl(received.rawValue, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw SystemError("fcntl", errno: errno, subject: "doorbell \(received)")
        }
        descriptor = received
    }

    /// Rings (a full counter — rung 2^64 − 2 times unanswered — is already ringing).
    public func ring() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(descriptor.rawValue, $0.baseAddress, 8) }
    }

    /// Waits until the doorbell rings or `timeoutMilliseconds` pass (-1: no limit); consumes
    /// every ring so far. True when it had rung.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        var entry = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&entry, 1, timeoutMilliseconds)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return false }
            var count: UInt64 = 0
            let got = withUnsafeMutableBytes(of: &count) { read(descriptor.rawValue, $0.baseAddress, 8) }
            return got == 8
        }
    }
}
