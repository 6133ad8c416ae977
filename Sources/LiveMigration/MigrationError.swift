/// Why a migration failed, with a sentence naming the stream, message or field involved.
public struct MigrationError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        /// The two sides speak different protocol or state-format versions.
        case versionMismatch
        /// The destination refused the machine (another size, vCPU count, disks).
        case refused
        /// A stream broke, stalled past its timeout, or the peer closed it.
        case connection
        /// A record failed authentication or decryption: not from the peer that shook hands.
        case authentication
        /// A record or message is malformed (hostile or corrupt input).
        case malformed
        /// The guest kept dirtying memory faster than the link and nothing made it converge.
        case notConverging
        /// The pause, the final copy or the restore took longer than allowed.
        case timedOut
        /// Cancelled by the operator.
        case cancelled
        /// The hypervisor failed (pause, state save or restore, memory).
        case hypervisor
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
