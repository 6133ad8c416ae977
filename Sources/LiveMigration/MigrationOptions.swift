/// How a migration behaves (the API's and `vmctl migrate`'s options).
public struct MigrationOptions: Codable, Sendable, Equatable {
    /// The longest the guest may be paused at switchover; pre-copy iterates until the last round
    /// is expected to fit in it.
    public var downtimeBudgetMilliseconds: UInt64
    /// TCP streams between the VMMs (1 – 16).
    public var streams: Int
    /// 0: as fast as the link goes; else a cap on the bytes per second sent.
    public var maximumBandwidthBytesPerSecond: UInt64
    /// Throttle the vCPUs when the guest dirties memory faster than the link sends it.
    public var autoConverge: Bool
    /// Switch to post-copy when pre-copy (with throttling) does not converge.
    public var postCopy: Bool
    /// Pre-copy rounds before giving up on convergence (then post-copy, or fail).
    public var maximumRounds: Int
    /// A stream that makes no progress for this long has failed (link cut, peer gone).
    public var stallTimeoutMilliseconds: UInt64
    /// The whole migration must end within this.
    public var timeoutSeconds: UInt64

    public init(downtimeBudgetMilliseconds: UInt64 = 50, streams: Int = 2, maximumBandwidthBytesPerSecond: UInt64 = 0,
                autoConverge: Bool = true, postCopy: Bool = true, maximumRounds: Int = 30,
                stallTimeoutMilliseconds: UInt64 = 3000, timeoutSeconds: UInt64 = 600) {
        self.downtimeBudgetMilliseconds = downtimeBudgetMilliseconds
        self.streams = streams
        self.maximumBandwidthBytesPerSecond = maximumBandwidthBytesPerSecond
        self.autoConverge = autoConverge
        self.postCopy = postCopy
        self.maximumRounds = maximumRounds
        self.stallTimeoutMilliseconds = stallTimeoutMilliseconds
        self.timeoutSeconds = timeoutSeconds
    }

    /// Range checks, naming the field.
    public func validate() throws(MigrationError) {
        guard (1...60_000).contains(downtimeBudgetMilliseconds) else {
            throw MigrationError(.refused, "downtimeBudgetMilliseconds is \(downtimeBudgetMilliseconds); it must be 1 – 60000")
        }
        guard (1...16).contains(streams) else { throw MigrationError(.refused, "streams is \(streams); it must be 1 – 16") }
        guard (1...1000).contains(maximumRounds) else {
            throw MigrationError(.refused, "maximumRounds is \(maximumRounds); it must be 1 – 1000")
        }
        guard (100...600_000).contains(stallTimeoutMilliseconds) else {
            throw MigrationError(.refused, "stallTimeoutMilliseconds is \(stallTimeoutMilliseconds); it must be 100 – 600000")
        }
        guard (1...86_400).contains(timeoutSeconds) else {
            throw MigrationError(.refused, "timeoutSeconds is \(timeoutSeconds); it must be 1 – 86400")
        }
    }
}

/// Where a migration stands, as the source VMM reports it while it runs.
public struct MigrationProgress: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// Copying memory while the guest runs.
        case preCopy
        /// Guest paused; the last pages and the state are on their way.
        case stopAndCopy
        /// The destination runs the guest; pages still arrive on demand and in the background.
        case postCopy
        case completed
        case failed
    }

    public var phase: Phase
    /// The pre-copy round (0 = the full pass).
    public var round: Int
    /// Bytes put on the wire so far.
    public var transferredBytes: UInt64
    /// Bytes of memory still to send (the dirty set waiting for its round).
    public var remainingBytes: UInt64
    /// How fast the guest dirties memory, measured over the last round.
    public var dirtyRateBytesPerSecond: UInt64
    /// How fast the link carried the last round.
    public var bandwidthBytesPerSecond: UInt64
    /// What switching over now would cost: remaining bytes over the bandwidth, plus the state.
    public var expectedDowntimeMilliseconds: Double
    public var throttlePercent: Int
    /// Pages sent as data and as zero ranges.
    public var dataPages: UInt64
    public var zeroPages: UInt64

    public init(phase: Phase = .preCopy, round: Int = 0, transferredBytes: UInt64 = 0, remainingBytes: UInt64 = 0,
                dirtyRateBytesPerSecond: UInt64 = 0, bandwidthBytesPerSecond: UInt64 = 0, expectedDowntimeMilliseconds: Double = 0,
                throttlePercent: Int = 0, dataPages: UInt64 = 0, zeroPages: UInt64 = 0) {
        self.phase = phase
        self.round = round
        self.transferredBytes = transferredBytes
        self.remainingBytes = remainingBytes
        self.dirtyRateBytesPerSecond = dirtyRateBytesPerSecond
        self.bandwidthBytesPerSecond = bandwidthBytesPerSecond
        self.expectedDowntimeMilliseconds = expectedDowntimeMilliseconds
        self.throttlePercent = throttlePercent
        self.dataPages = dataPages
        self.zeroPages = zeroPages
    }
}

/// How the source left the machine when it stopped copying: paused, its state restored at the
/// destination, waiting for the handoff.
public struct SwitchoverReady: Sendable, Equatable {
    /// True when pages are still missing at the destination (post-copy): after the handoff the
    /// source must serve them (``MigrationSource/servePostCopy()``) before it may go away.
    public var postCopy: Bool
    /// `CLOCK_REALTIME` when the guest was paused.
    public var pausedWallNanoseconds: Int64
    /// Pages sent while the guest was paused, and the state's size.
    public var finalPages: Int
    public var stateBytes: Int
    /// Pages still to send after the handoff (post-copy).
    public var outstandingPages: Int
}
