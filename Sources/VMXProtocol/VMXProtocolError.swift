public import SystemSupport

/// An error on a control connection or disk channel between the agent and a VMM.
public struct VMXProtocolError: Error, Sendable, CustomStringConvertible {
    /// The category of a ``VMXProtocolError``.
    public enum Code: String, Sendable {
        /// The peer sent something that is not a valid frame or message (named in the message).
        case malformed
        /// The peer speaks another protocol version.
        case unsupportedVersion
        /// The connection is closed.
        case closed
        /// No message arrived in time.
        case timedOut
        /// A system call failed (the cause is kept).
        case system
        /// The peer answered with an error reply.
        case rejected
    }

    public var code: Code
    public var message: String
    /// The failed system call, for ``Code/system``.
    public var cause: SystemError?

    public init(_ code: Code, _ message: String, cause: SystemError? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        cause.map { "\(code.rawValue): \(message): \($0)" } ?? "\(code.rawValue): \(message)"
    }
}
