import Glibc

/// A failure of a tool's own work on local files (not of the volume), keeping the `errno` of
/// the system call that failed.
public struct ToolError: Error, Sendable, CustomStringConvertible {
    /// What failed, naming the file.
    public var message: String
    /// The `errno` of the failing system call, if one failed.
    public var errno: Int32?

    public init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }

    /// The failure of a system call: `what` followed by the text of `code` (default: the current `errno`).
    public static func systemCall(_ what: String, errno code: Int32? = nil) -> ToolError {
        ToolError(what, errno: code ?? Glibc.errno)
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message): \(String(cString: strerror(errno)))"
    }
}
