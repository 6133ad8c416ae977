/// One host's heartbeat slot: a 4 KiB sector in the heartbeat region.
///
/// The owner rewrites it every heartbeat interval (``stamp`` +1). Other hosts judge liveness only
/// by seeing the slot *change*, on their own monotonic clock. ``generation`` changes whenever the
/// state changes (claim, recovery, release), so a lock record that remembers the generation its
/// holder had can tell whether the holder is still the same incarnation.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `HBSL`, version = write counter) |
/// | 32 | 4 | slot index |
/// | 36 | 4 | state: 0 free, 1 live, 2 replaying, 3 maintenance (fsck.vmfs repairing) |
/// | 40 | 8 | generation |
/// | 48 | 8 | stamp (renewal counter) |
/// | 56 | 16 | owner host UUID |
/// | 72 | 64 | owner host name |
/// | 136 | 4 | owner process ID |
/// | 140 | 4 | renew interval, ms |
/// | 144 | 4 | dead interval, ms |
/// | 148 | 4 | I/O timeout, ms |
/// | 152 | 8 | wall time of the last renewal, ns (display only) |
/// | 160 | 8 | wall time the slot was claimed, ns (display only) |
/// | 168 | 16 | replaying host UUID |
/// | 184 | 2 | replaying host's slot |
/// | 192 | 8 | replaying host's generation |
/// | 200 | 8 | generation of the incarnation being recovered (state replaying) |
/// | 208 | 4 | maintenance phase (state maintenance): 0 checking, 1 repairing |
/// | 216 | 8 | the owner's persistent-reservation key at the target (0: none; since 1.2) |
///
/// In a slot that is not free the intervals must lie within ``HeartbeatTiming``'s bounds (or be
/// 0: the volume's); decoding refuses anything else, so that no wait on another host's timing
/// can last longer than those bounds allow.
public struct HeartbeatSlot: Sendable, Equatable {
    /// What a slot is doing.
    public enum State: UInt32, Sendable {
        case free = 0, live = 1, replaying = 2
        /// Held by `fsck.vmfs -y` while it repairs the volume: no host may mount meanwhile,
        /// and a maintenance slot that stopped changing means a repair was interrupted.
        case maintenance = 3
    }

    /// How far a repair holding a maintenance slot has got.
    public enum MaintenancePhase: UInt32, Sendable {
        /// Checking: nothing written yet. A repair that stops in this phase left the volume as it
        /// was, so hosts clear its slot once it has been silent for its dead interval.
        case checking = 0
        /// Writing repairs: a repair that stops now may have left the volume half-fixed, and hosts
        /// stay out until `fsck.vmfs -y` completes.
        case repairing = 1
    }

    public var index: Int
    public var state: State = .free
    public var generation: UInt64 = 0
    public var stamp: UInt64 = 0
    public var owner: HostUUID = .zero
    public var ownerName: String = ""
    public var ownerPID: UInt32 = 0
    public var renewIntervalMs: UInt32 = 0
    public var deadIntervalMs: UInt32 = 0
    public var ioTimeoutMs: UInt32 = 0
    public var lastRenewalWallTime: Int64 = 0
    public var claimedWallTime: Int64 = 0
    public var replayer: HostUUID = .zero
    public var replayerSlot: Int = 0
    public var replayerGeneration: UInt64 = 0
    /// While replaying: the generation the dead owner had (its locks carry it).
    public var recoveringGeneration: UInt64 = 0
    /// While in maintenance: whether the repair has started writing.
    public var maintenancePhase: MaintenancePhase = .checking
    /// The key the owner registered at the LUN (persistent-reservation fencing); 0 when none.
    public var fencingKey: UInt64 = 0
    /// The sector version (write counter).
    public var version: UInt64 = 0

    public init(index: Int) { self.index = index }

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.heartbeat, volumeID: volumeID, address: address, version: version) { w in
            w.put(UInt32(index), at: 32)
            w.put(state.rawValue, at: 36)
            w.put(generation, at: 40)
            w.put(stamp, at: 48)
            w.put(uuid: owner, at: 56)
            w.put(string: ownerName, at: 72, width: 63)
            w.put(ownerPID, at: 136)
            w.put(renewIntervalMs, at: 140)
            w.put(deadIntervalMs, at: 144)
            w.put(ioTimeoutMs, at: 148)
            w.put(lastRenewalWallTime, at: 152)
            w.put(claimedWallTime, at: 160)
            w.put(uuid: replayer, at: 168)
            w.put(UInt16(truncatingIfNeeded: replayerSlot), at: 184)
            w.put(replayerGeneration, at: 192)
            w.put(recoveringGeneration, at: 200)
            w.put(maintenancePhase.rawValue, at: 208)
            w.put(fencingKey, at: 216)
        }
    }

    static func decode(_ bytes: [UInt8], index: Int, volumeID: UInt64, address: UInt64) throws(VMFSError) -> HeartbeatSlot {
        var slot = HeartbeatSlot(index: index)
        switch try SectorCodec.open(bytes, magic: .heartbeat, volumeID: volumeID, address: address,
                                    structure: "heartbeat slot \(index)") {
        case .pristine:
            return slot
        case .valid(let r, let version):
            guard Int(r.u32(32)) == index, let state = State(rawValue: r.u32(36)),
                  let phase = MaintenancePhase(rawValue: r.u32(208)) else {
                throw VMFSError(.corrupt, "heartbeat slot \(index) has an invalid index, state or maintenance phase",
                                location: .init(structure: "heartbeat slot \(index)", offset: address + 32))
            }
            if state != .free {
                for (offset, value, limit, name) in [(140, r.u32(140), HeartbeatTiming.maxRenewIntervalMs, "renew interval"),
                                                     (144, r.u32(144), HeartbeatTiming.maxDeadIntervalMs, "dead interval"),
                                                     (148, r.u32(148), HeartbeatTiming.maxIOTimeoutMs, "I/O timeout")] where value > limit {
                    throw VMFSError(.corrupt, "heartbeat slot \(index) publishes a \(name) of \(value) ms (at most \(limit) ms)",
                                    location: .init(structure: "heartbeat slot \(index)", offset: address + UInt64(offset)))
                }
            }
            slot.maintenancePhase = phase
            slot.fencingKey = r.u64(216)
            slot.version = version
            slot.state = state
            slot.generation = r.u64(40)
            slot.stamp = r.u64(48)
            slot.owner = r.uuid(at: 56)
            slot.ownerName = r.string(at: 72, width: 63) ?? ""
            slot.ownerPID = r.u32(136)
            slot.renewIntervalMs = r.u32(140)
            slot.deadIntervalMs = r.u32(144)
            slot.ioTimeoutMs = r.u32(148)
            slot.lastRenewalWallTime = r.i64(152)
            slot.claimedWallTime = r.i64(160)
            slot.replayer = r.uuid(at: 168)
            slot.replayerSlot = Int(r.u16(184))
            slot.replayerGeneration = r.u64(192)
            slot.recoveringGeneration = r.u64(200)
            return slot
        }
    }
}
