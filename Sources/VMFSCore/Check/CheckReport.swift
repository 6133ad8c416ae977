/// The result of `fsck.vmfs`.
public struct CheckReport: Sendable, Codable {
    /// One inconsistency.
    public struct Problem: Sendable, Codable, Equatable {
        /// The structure, for example `file descriptor 3` or `block cluster 2 bitmap`.
        public var structure: String
        /// Byte offset on the device, when the problem is tied to one place.
        public var offset: UInt64?
        public var message: String
        /// True when `-y` fixed it.
        public var repaired: Bool
    }

    public var device: String
    public var problems: [Problem] = []
    /// Observations that are not errors (live hosts, unwritten blocks past the end, …).
    public var notes: [String] = []
    public var files = 0
    public var usedBlocks: UInt64 = 0
    public var usedPointerBlocks: UInt64 = 0
    public var replayedTransactions = 0
    /// Set when the check could not run (exit code 8).
    public var operationalError: String?
    /// Set when the check was interrupted (exit code 32): what it leaves behind.
    public var interrupted: String?

    public init(device: String) { self.device = device }

    /// The fsck(8) exit code: 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational
    /// error, 32 interrupted by the user.
    public var exitCode: Int32 {
        if interrupted != nil { return 32 }
        if operationalError != nil { return 8 }
        if problems.contains(where: { !$0.repaired }) { return 4 }
        return problems.isEmpty ? 0 : 1
    }
}
