import Synchronization

/// Recovers a dead host: exactly one survivor replays its journal, frees its locks and its slot.
///
/// 1. Compare-and-write the dead slot from the image last seen (LIVE, generation g) to
///    REPLAYING (g+1) naming this host as replayer. Of two survivors racing, one write matches
///    and the other finds the slot changed and backs off.
/// 2. Replay the dead host's journal (idempotent: only newer versions are written).
/// 3. Empty its journal, free every lock held by (slot, g).
/// 4. Compare-and-write the slot to FREE (g+2). Only now can its former locks be taken.
///
/// A replay whose replayer dies is taken over the same way (REPLAYING → REPLAYING with this
/// host as replayer); replay is safe to repeat.
final class HostRecovery: Sendable {
    /// What one recovery did, for logs and benchmarks.
    struct Report: Sendable {
        var slot: Int
        var owner: HostUUID
        var ownerGeneration: UInt64
        var replay: JournalReplay.Result
        var locksReleased: Int
        var durationNanoseconds: UInt64
    }

    let heartbeat: HeartbeatService
    let device: any BlockDevice
    let lockManager: @Sendable () -> LockManager?
    private let inProgress = KeyedLocks<Int>()
    private let reports = Mutex<[Report]>([])
    private let afterRecovery = Mutex<(@Sendable (Report) -> Void)?>(nil)

    /// Stops the wait for another host's replay.
    let interruption: Interruption

    init(heartbeat: HeartbeatService, device: any BlockDevice, lockManager: @escaping @Sendable () -> LockManager?,
         interruption: Interruption = .process) {
        self.interruption = interruption
        self.heartbeat = heartbeat
        self.device = device
        self.lockManager = lockManager
    }

    /// Sets a callback run after each completed recovery (orphan cleanup).
    func onRecovered(_ body: @escaping @Sendable (Report) -> Void) { afterRecovery.withLock { $0 = body } }

    /// Recoveries this host performed.
    var completed: [Report] { reports.withLock { $0 } }

    /// Recovers slot `index` if it is dead (or its replay was abandoned); waits while another live
    /// host replays it. Returns the report when this host did the replay.
    @discardableResult
    func recover(slot index: Int, waitForOthers: Bool = true, force: Bool = false) throws(VMFSError) -> Report? {
        try inProgress.withLock(index) { () throws(VMFSError) -> Report? in
            try recoverLocked(index, waitForOthers: waitForOthers, force: force)
        }
    }

    /// With `force`, a slot is recovered even though it has not looked dead for its dead
    /// interval (the administrator knows its host is down).
    private func recoverLocked(_ index: Int, waitForOthers: Bool, force: Bool) throws(VMFSError) -> Report? {
        guard let me = heartbeat.membership else {
            throw VMFSError(.fenced, "this host holds no heartbeat slot and cannot recover others")
        }
        try heartbeat.fence.checkWritable()
        let started = Clock.monotonicNanoseconds
        _ = try heartbeat.refreshSlot(index)
        guard index != me.slot else { return nil }
        var verdict = heartbeat.observations.liveness(of: index, own: me.slot)
        if force && verdict == .alive, heartbeat.observations.observation(index)?.slot.state == .live { verdict = .dead }
        if force && verdict == .replaying { verdict = .replayAbandoned }
        switch verdict {
        case .free, .alive:
            return nil
        case .replaying:
            if waitForOthers { waitWhileReplaying(index, me: me) }
            return nil
        case .dead, .replayAbandoned:
            break
        }
        guard let observation = heartbeat.observations.observation(index), observation.readable else { return nil }
        let dead = observation.slot
        let ownerGeneration = dead.state == .live ? dead.generation : dead.recoveringGeneration
        // Fence the dead host at the storage first: whatever it still had queued fails there.
        try heartbeat.storageFence?.preempt(dead.fencingKey)
        var replaying = dead
        replaying.state = .replaying
        replaying.generation = dead.generation &+ 1
        replaying.version = dead.version &+ 1
        replaying.stamp = dead.stamp &+ 1
        replaying.replayer = heartbeat.identity.uuid
        replaying.replayerSlot = me.slot
        replaying.replayerGeneration = me.generation
        replaying.recoveringGeneration = ownerGeneration
        replaying.lastRenewalWallTime = Clock.wallNanoseconds
        guard try heartbeat.write(slot: replaying, expected: observation.raw) == .written else {
            return nil  // someone else claimed the replay, or the host came back
        }
        let layout = heartbeat.layout
        let volumeID = heartbeat.volumeID
        let scan = try JournalReplay.scan(device: device, layout: layout, volumeID: volumeID, slot: index)
        let replay = try JournalReplay.replay(scan, device: device, layout: layout, volumeID: volumeID)
        let writer = JournalWriter(device: device, layout: layout, volumeID: volumeID, slot: index,
                                   host: heartbeat.identity.uuid, startSequence: scan.nextSequence)
        try writer.reset()
        let released = try lockManager()?.releaseAll(heldBySlot: index, generation: ownerGeneration) ?? 0
        var free = replaying
        free.state = .free
        free.fencingKey = 0
        free.generation = replaying.generation &+ 1
        free.version = replaying.version &+ 1
        free.stamp = replaying.stamp &+ 1
        free.lastRenewalWallTime = Clock.wallNanoseconds
        let replayingRaw = replaying.encoded(volumeID: volumeID, address: layout.heartbeatSlot(index))
        _ = try heartbeat.write(slot: free, expected: replayingRaw, ownerUpdate: true)
        _ = try? heartbeat.refreshSlot(index)
        let report = Report(slot: index, owner: dead.owner, ownerGeneration: ownerGeneration, replay: replay,
                            locksReleased: released, durationNanoseconds: Clock.monotonicNanoseconds - started)
        reports.withLock { $0.append(report) }
        afterRecovery.withLock { $0 }?(report)
        return report
    }

    private func waitWhileReplaying(_ index: Int, me: HeartbeatService.Membership) {
        let deadline = Clock.monotonicNanoseconds + UInt64(heartbeat.timing.deadIntervalMs) * 4_000_000
        while Clock.monotonicNanoseconds < deadline && !interruption.isRequested {
            Clock.sleep(milliseconds: 20)
            _ = try? heartbeat.refreshSlot(index)
            if heartbeat.observations.liveness(of: index, own: me.slot) != .replaying { return }
        }
    }
}
