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

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
