#if canImport(Glibc)
internal import Glibc
#endif

/// A failed system call: which call, on what, and the `errno` it returned.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call that failed, e.g. `sendmsg`.
    public var call: String
    /// What it was called on (a path, a socket's purpose), when known.
    public var subject: String?
    /// The `errno` value.
    public var errno: Int32

    public init(_ call: String, errno: Int32, subject: String? = nil) {
        self.call = call
        self.errno = errno
        self.subject = subject
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        return subject.map { "\(call) on \($0): \(reason) (errno \(errno))" } ?? "\(call): \(reason) (errno \(errno))"
    }
}
