/// A heartbeat slot as an administrator sees it (`vmfs hosts`).
public struct HostInfo: Sendable, Codable, Equatable {
    public var slot: Int
    /// `free`, `live` or `replaying`, as written in the slot.
    public var state: String
    /// The observer's verdict: `self`, `alive`, `dead`, `free`, `replaying`, `replay-abandoned`,
    /// or `unknown` (not observed long enough), or `unreadable`.
    public var liveness: String
    public var host: String
    public var hostName: String
    public var pid: UInt32
    public var generation: UInt64
    public var stamp: UInt64
    /// Milliseconds since the observer saw the slot change (on the observer's clock).
    public var msSinceChange: UInt64?
    /// The owner's wall-clock time of its last renewal (display only).
    public var lastRenewal: String
    public var renewIntervalMs: UInt32
    public var deadIntervalMs: UInt32
    public var ioTimeoutMs: UInt32
    /// For a replaying slot: who replays it.
    public var replayer: String?
    /// The persistent-reservation key the owner registered (`0x564d…`), when the volume fences at the LUN.
    public var fencingKey: String?
    /// Whether that key is registered at the LUN now (nil when not known).
    public var registered: Bool?

    static func describe(_ observations: HostObservations, own: Int?, observedLongEnough: Bool = true) -> [HostInfo] {
        let now = Clock.monotonicNanoseconds
        return observations.all().sorted { $0.key < $1.key }.compactMap { index, observation -> HostInfo? in
            let slot = observation.slot
            if slot.state == .free && slot.generation == 0 && observation.readable { return nil }
            let verdict: String
            if !observation.readable {
                verdict = "unreadable"
            } else if index == own {
                verdict = "self"
            } else {
                switch observations.liveness(of: index, own: own, now: now) {
                case .free: verdict = "free"
                case .alive where slot.state == .maintenance:
                    let stalled = now &- observation.lastChange >= UInt64(max(slot.deadIntervalMs, 1)) * 1_000_000
                    verdict = stalled ? "interrupted" : (observedLongEnough ? "alive" : "unknown")
                case .alive: verdict = slot.state == .live && !observedLongEnough ? "unknown" : "alive"
                case .dead: verdict = "dead"
                case .replaying: verdict = "replaying"
                case .replayAbandoned: verdict = "replay-abandoned"
                }
            }
            let state: String
            switch slot.state {
            case .free: state = "free"
            case .live: state = "live"
            case .replaying: state = "replaying"
            case .maintenance: state = "maintenance"
            }
            return HostInfo(slot: index, state: state, liveness: verdict, host: slot.owner.description, hostName: slot.ownerName,
                            pid: slot.ownerPID, generation: slot.generation, stamp: slot.stamp,
                            msSinceChange: (now &- observation.lastChange) / 1_000_000,
                            lastRenewal: slot.lastRenewalWallTime == 0 ? "-" : formatWallTime(slot.lastRenewalWallTime),
                            renewIntervalMs: slot.renewIntervalMs, deadIntervalMs: slot.deadIntervalMs, ioTimeoutMs: slot.ioTimeoutMs,
                            replayer: slot.state == .replaying ? "\(slot.replayer) (slot \(slot.replayerSlot))" : nil,
                            fencingKey: slot.fencingKey == 0 ? nil : "0x" + String(slot.fencingKey, radix: 16), registered: nil)
        }
    }
}

/// A held lock as an administrator sees it (`vmfs locks`).
public struct LockInfo: Sendable, Codable, Equatable {
    /// One holder.
    public struct Holder: Sendable, Codable, Equatable {
        public var host: String
        public var hostName: String
        public var slot: Int
        public var generation: UInt64
        public var since: String
        public var pid: UInt32
        /// `alive`, `stale` (its heartbeat generation moved on), `dead`, or `unknown`.
        public var status: String
    }

    public var index: Int
    /// What the lock protects, for example `file 'vm.vmdk'`, `file table`, `block cluster 3`.
    public var object: String
    public var mode: String
    public var version: UInt64
    public var holders: [Holder]
    public var releaseRequested: Bool
}
