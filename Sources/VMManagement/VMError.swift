public import VMFSCore
/// The error of VM management: creating, running, listing and removing VMs on a volume.
public struct VMError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of failure.
    public enum Code: Sendable, Equatable {
        case malformedConfiguration
        case invalidArgument
        case notFound
        case alreadyExists
        case busy
        case storage
        case hypervisor
    }

    public var code: Code
    public var message: String
    /// The volume error behind a ``Code/busy`` or ``Code/storage`` failure (it names the lock owner).
    public var cause: VMFSError?

    public init(_ code: Code, _ message: String, cause: VMFSError? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}
