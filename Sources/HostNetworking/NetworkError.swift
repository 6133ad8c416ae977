/// A failure configuring or using this host's virtual network, with what was being done and,
/// for a failed command, its output.
public struct NetworkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The category of a ``NetworkError``.
    public enum Code: String, Sendable {
        /// A value in a configuration or request is wrong (the message names it).
        case invalidArgument
        /// No such virtual switch, port group, port or interface.
        case notFound
        /// A virtual switch or port group of that name exists already.
        case alreadyExists
        /// An interface this host would create has a name that is taken by something else.
        case nameClash
        /// Still used (a port group by VMs, a virtual switch by port groups).
        case inUse
        /// Creating bridges, TAP devices or rules needs CAP_NET_ADMIN (root).
        case permissionDenied
        /// A tool (ip, nft, tc) or kernel feature is missing.
        case unavailable
        /// A command or system call failed otherwise.
        case failed
    }

    public var code: Code
    public var message: String
    /// The output of the command that failed, when one did.
    public var output: String?

    public init(_ code: Code, _ message: String, output: String? = nil) {
        self.code = code
        self.message = message
        self.output = output
    }

    public var description: String {
        guard let output, !output.isEmpty else { return message }
        return "\(message): \(output.trimmingTrailingNewlines)"
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var text = self
        while text.last?.isNewline == true { text.removeLast() }
        return text
    }
}
