/// An error the agent reports to a client: a stable code, a sentence naming what is wrong, and
/// where it helps the field or the owner of a lock.
public struct AgentError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// Stable error codes; the HTTP status follows from them.
    public enum Code: String, Codable, Sendable {
        /// The request is malformed (400); `field` names the part.
        case invalidArgument
        /// No such VM, volume, file or task (404).
        case notFound
        /// It exists already (409).
        case alreadyExists
        /// Locked by another host or client, or the VM is in the wrong state (409); `owner` names who.
        case busy
        /// The VM is not in a state that allows the operation (409).
        case invalidState
        /// The volume cannot be reached or written (503).
        case storageUnavailable
        /// The operation failed on the volume or in the VMM (500 is never used for bad input).
        case failed
        /// Not allowed (403).
        case forbidden
    }

    public var code: Code
    public var message: String
    public var field: String?
    public var owner: String?

    public init(_ code: Code, _ message: String, field: String? = nil, owner: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.owner = owner
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
