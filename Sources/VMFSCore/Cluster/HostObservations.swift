import Synchronization

/// What this host has seen of every heartbeat slot, timed on its own monotonic clock.
///
/// A slot's liveness is never read from timestamps written by other hosts: a slot is *alive*
/// while it keeps changing, and *dead* once it has not changed for its owner's published dead
/// interval, measured from the moment this host first saw its current contents.
final class HostObservations: Sendable {
    /// One slot as last seen.
    struct Observation: Sendable {
        var slot: HeartbeatSlot
        var raw: [UInt8]
        /// Monotonic time this host first saw the current contents.
        var lastChange: UInt64
        /// False when the sector failed validation (treated as "unchanged", never as "free").
        var readable: Bool
    }

    /// The verdict on a slot.
    enum Liveness: Equatable, Sendable {
        case free
        case alive
        /// Not changed for its dead interval.
        case dead
        /// Being replayed by a host that is itself alive.
        case replaying
        /// Being replayed by a host that died or moved on.
        case replayAbandoned
    }

    private let table = Mutex<[Int: Observation]>([:])
    let volumeDeadIntervalMs: UInt32

    init(volumeDeadIntervalMs: UInt32) {
        self.volumeDeadIntervalMs = volumeDeadIntervalMs
    }

    /// Folds a fresh read of the heartbeat region into the table.
    func update(region: [UInt8], layout: VolumeLayout, volumeID: UInt64, now: UInt64 = Clock.monotonicNanoseconds) {
        let size = FormatConstants.sectorSize
        table.withLock { table in
            for index in 0..<Int(layout.maxHosts) {
                let raw = Array(region[(index * size)..<((index + 1) * size)])
                let address = layout.heartbeatSlot(index)
                let decoded = try? HeartbeatSlot.decode(raw, index: index, volumeID: volumeID, address: address)
                if let previous = table[index] {
                    if previous.raw != raw {
                        table[index] = Observation(slot: decoded ?? previous.slot, raw: raw, lastChange: now, readable: decoded != nil)
                    } else if decoded == nil {
                        table[index]?.readable = false
                    }
                } else {
                    table[index] = Observation(slot: decoded ?? HeartbeatSlot(index: index), raw: raw, lastChange: now,
                                               readable: decoded != nil)
                }
            }
        }
    }

    /// The last observation of `index`.
    func observation(_ index: Int) -> Observation? { table.withLock { $0[index] } }

    /// All observations, by slot.
    func all() -> [Int: Observation] { table.withLock { $0 } }

    private func deadInterval(of slot: HeartbeatSlot) -> UInt64 {
        UInt64(slot.deadIntervalMs > 0 ? slot.deadIntervalMs : volumeDeadIntervalMs) * 1_000_000
    }

    /// The verdict on slot `index` now. `own` is this host's slot (always alive).
    func liveness(of index: Int, own: Int?, now: UInt64 = Clock.monotonicNanoseconds) -> Liveness {
        table.withLock { table in
            verdict(index, own: own, now: now, table: table)
        }
    }

    private func verdict(_ index: Int, own: Int?, now: UInt64, table: [Int: Observation]) -> Liveness {
        guard let observation = table[index] else { return .alive }
        if index == own { return .alive }
        let slot = observation.slot
        switch slot.state {
        case .free:
            return observation.readable ? .free : .alive
        case .live:
            return now &- observation.lastChange >= deadInterval(of: slot) ? .dead : .alive
        case .maintenance:
            // Never recovered by a host: a repair that stopped needs fsck.vmfs -y again.
            return .alive
        case .replaying:
            let replayer = slot.replayerSlot
            if replayer == own { return .replaying }
            guard let replayerObservation = table[replayer] else { return .replaying }
            if replayerObservation.slot.generation != slot.replayerGeneration || replayerObservation.slot.state == .free {
                return .replayAbandoned
            }
            // A replay also stalls when the replayer stopped heartbeating.
            let stalledFor = now &- max(replayerObservation.lastChange, observation.lastChange)
            return stalledFor >= deadInterval(of: replayerObservation.slot) ? .replayAbandoned : .replaying
        }
    }

    /// How long ago (ns) slot `index` last changed as seen here.
    func age(of index: Int, now: UInt64 = Clock.monotonicNanoseconds) -> UInt64? {
        table.withLock { $0[index].map { now &- $0.lastChange } }
    }

    /// Slots that need recovery now: dead live slots and abandoned replays.
    func slotsNeedingRecovery(own: Int?, now: UInt64 = Clock.monotonicNanoseconds) -> [Int] {
        table.withLock { table in
            table.keys.sorted().filter {
                let v = verdict($0, own: own, now: now, table: table)
                return v == .dead || v == .replayAbandoned
            }
        }
    }
}
