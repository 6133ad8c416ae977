import Synchronization

/// One membership of this host in a volume: a heartbeat slot and everything that depends on it
/// (journal, metadata store, locks, allocators, open files).
///
/// When the host loses its slot the session is dead: its handles are stale and it writes
/// nothing more. The ``Volume`` then starts a new session with a new slot.
final class Session: Sendable {
    let header: VolumeHeader
    let layout: VolumeLayout
    let volumeID: UInt64
    let rawDevice: any BlockDevice
    let device: FencedDevice
    let options: MountOptions
    let timing: HeartbeatTiming
    let fence: FenceState
    let heartbeat: HeartbeatService
    let observations: HostObservations
    let membership: HeartbeatService.Membership
    let journal: JournalWriter
    let store: MetadataStore
    let locks: LockManager
    let blocks: ClusterAllocator
    let pointers: ClusterAllocator
    let recovery: HostRecovery
    let statistics: ClusterIOStatistics
    let namespace: NamespaceCache
    /// Persistent-reservation fencing of this membership, when the volume uses it.
    let storageFence: StorageFence?
    /// What joining noticed and worked around (a damaged journal of a free slot), for the event log.
    let startupNotes: [String]

    private struct State {
        var openFiles: [Int: OpenFile] = [:]
        var closed = false
        var committer: BackgroundThread?
        var recovering: Set<Int> = []
        /// Descriptor slots whose lock this host holds for a create, remove or cleanup in progress.
        var claimedSlots: Set<Int> = []
        /// Background recoveries and orphan cleanups still running (``inBackground(_:_:)``).
        var backgroundWork = 0
        /// File locks taken over from this host's previous incarnation, until ``releaseAdoptedLocks()``.
        var adoptedLocks: Set<Int> = []
    }
    private let state = Monitor<State>(State())
    private let lostHandler = Mutex<(@Sendable (String) -> Void)?>(nil)
    /// Serializes, per descriptor slot, everything this host does with the slot's on-disk lock:
    /// opening, closing and claiming the slot. The on-disk lock is held per host (taking it again
    /// is a no-op, releasing it once frees it), so the threads of this host must agree on who
    /// holds it: an ``OpenFile`` registered in `openFiles`, or one claim (`claimedSlots`), never
    /// both, and that owner changes only under this lock.
    let slotLocks = KeyedLocks<Int>()
    /// Serializes this host's namespace changes (the on-disk table lock is held per host).
    let namespaceLock = KeyedLocks<Int>()

    var identity: HostIdentity { options.host }
    var blockSize: UInt64 { UInt64(layout.blockSize) }

    // MARK: Joining

    /// Joins the volume: claims a heartbeat slot (first recovering this host's previous
    /// incarnation if it crashed), readies the journal, and starts the heartbeat.
    init(header: VolumeHeader, device rawDevice: any BlockDevice, options: MountOptions,
         statistics: ClusterIOStatistics) throws(VMFSError) {
        self.header = header
        layout = header.layout
        volumeID = header.volumeID
        self.rawDevice = rawDevice
        self.options = options
        self.statistics = statistics
        let timing = options.timing ?? HeartbeatTiming(renewIntervalMs: header.heartbeatIntervalMs,
                                                        deadIntervalMs: header.deadIntervalMs,
                                                        ioTimeoutMs: header.ioTimeoutMs)
        try timing.validate()
        self.timing = timing
        let fence = FenceState(timing: timing)
        self.fence = fence
        let fenced = FencedDevice(base: rawDevice, fence: fence, writableEnd: header.layout.backupHeaderOffset)
        device = fenced
        let observations = HostObservations(volumeDeadIntervalMs: header.deadIntervalMs)
        self.observations = observations
        storageFence = try Self.joinStorageFence(header: header, device: rawDevice, fence: fence)
        let heartbeatBox = Mutex<HeartbeatService?>(nil)
        let identity = options.host
        let updaters: AtomicUpdateFactory.Updaters
        do throws(VMFSError) {
            updaters = try AtomicUpdateFactory.make(
                header: header, raw: rawDevice, fenced: fenced, fence: fence, timing: timing, statistics: statistics,
                proposer: { heartbeatBox.withLock { $0 }?.proposerSlot.map { ($0, identity.uuid) } })
        } catch {
            storageFence?.leave()
            throw error
        }
        let heartbeat = HeartbeatService(device: rawDevice, updater: updaters.heartbeat,
                                         layout: header.layout, volumeID: header.volumeID, identity: options.host,
                                         timing: timing, observations: observations, fence: fence, storageFence: storageFence)
        heartbeatBox.withLock { $0 = heartbeat }
        self.heartbeat = heartbeat
        let lockUpdater = updaters.locks

        // Locks of a previous incarnation are released during its recovery, which needs a lock
        // manager before this host has a membership of its own.
        let joined = Mutex<LockManager.Me?>(nil)
        let recoveryBox = Mutex<HostRecovery?>(nil)
        let locks = LockManager(
            updater: lockUpdater, device: rawDevice, layout: header.layout, volumeID: header.volumeID, observations: observations,
            membership: { joined.withLock { $0 } },
            refreshSlot: { (index: Int) throws(VMFSError) in _ = try heartbeat.refreshSlot(index) },
            recover: { (index: Int) throws(VMFSError) in
                guard let recovery = recoveryBox.withLock({ $0 }) else { return }
                try recovery.recover(slot: index)
            }, interruption: options.interruption)
        self.locks = locks
        let joinedSlot: (HeartbeatService.Membership, JournalReplay.Scan, [String], Set<Int>)
        do throws(VMFSError) {
            joinedSlot = try Self.join(heartbeat: heartbeat, locks: locks, device: fenced, header: header,
                                       identity: options.host, adoptFileLocks: options.adoptFileLocks,
                                       interruption: options.interruption)
        } catch {
            storageFence?.leave()
            throw error
        }
        let (membership, scan, notes, adopted) = joinedSlot
        startupNotes = notes
        self.membership = membership
        joined.withLock { $0 = LockManager.Me(identity: options.host, slot: membership.slot, generation: membership.generation) }

        // This slot's journal is empty after a clean release or a recovery; replay anything
        // left over regardless (replay is idempotent), then start it afresh. A failure after the
        // replay gives the slot back rather than leaving it claimed and never renewed; before
        // it, the slot stays so that another host recovers it (and replays what is pending).
        let writer: JournalWriter
        var replayed = false
        do throws(VMFSError) {
            if !scan.pending.isEmpty {
                _ = try JournalReplay.replay(scan, device: device, layout: layout, volumeID: volumeID)
            }
            replayed = true
            writer = JournalWriter(device: device, layout: layout, volumeID: volumeID, slot: membership.slot,
                                   host: options.host.uuid, startSequence: scan.nextSequence)
            try writer.reset()
        } catch {
            if replayed { try? heartbeat.stop(release: true) }
            throw error
        }
        journal = writer
        store = MetadataStore(device: device, layout: layout, volumeID: volumeID, journal: journal,
                              ownerGeneration: membership.generation)
        blocks = ClusterAllocator(pool: .blocks, store: store, locks: locks, layout: layout, volumeID: volumeID, slot: membership.slot)
        pointers = ClusterAllocator(pool: .pointers, store: store, locks: locks, layout: layout, volumeID: volumeID, slot: membership.slot)
        let recovery = HostRecovery(heartbeat: heartbeat, device: device, lockManager: { [weak locks] in locks }, interruption: options.interruption)
        self.recovery = recovery
        recoveryBox.withLock { $0 = recovery }
        namespace = NamespaceCache(device: rawDevice, layout: layout, volumeID: volumeID, locks: locks)
        state.withLock { $0.adoptedLocks = adopted }
    }

    /// Claims a slot and reads its journal.
    ///
    /// A free slot whose journal cannot be read (a damaged header) is given back and another
    /// one is tried: a free slot's journal was replayed when the slot was freed, and what cannot
    /// be read cannot be replayed anyway; `fsck.vmfs` reports and resets it. The journal of this
    /// host's own crashed incarnation must be replayed, so there a damaged journal fails the mount.
    private static func join(heartbeat: HeartbeatService, locks: LockManager, device: any BlockDevice, header: VolumeHeader,
                             identity: HostIdentity, adoptFileLocks: Bool, interruption: Interruption)
        throws(VMFSError) -> (HeartbeatService.Membership, JournalReplay.Scan, [String], Set<Int>) {
        var skipped: Set<Int> = []
        var notes: [String] = []
        while true {
            let (membership, reclaimed, adopted) = try claimSlot(heartbeat: heartbeat, locks: locks, device: device, header: header,
                                                                 identity: identity, excluding: skipped, adoptFileLocks: adoptFileLocks,
                                                                 interruption: interruption)
            // A repair that claimed its slot while this host claimed its own: one of the two sees the other.
            let after = try heartbeat.refresh()
            if let repair = MaintenanceClaim.maintenanceSlot(in: after, layout: header.layout, volumeID: header.volumeID) {
                try? heartbeat.stop(release: true)
                throw MaintenanceClaim.refusal(repair.slot)
            }
            do throws(VMFSError) {
                let scan = try JournalReplay.scan(device: device, layout: header.layout, volumeID: header.volumeID, slot: membership.slot)
                return (membership, scan, notes, adopted)
            } catch where error.code == .corrupt && !reclaimed && skipped.count < 8 {
                try? heartbeat.stop(release: true)
                skipped.insert(membership.slot)
                notes.append("left heartbeat slot \(membership.slot) alone: \(error.message) (run fsck.vmfs)")
            }
        }
    }

    /// Claims a slot: reclaims this host's own crashed incarnation when there is one (`reclaimed`),
    /// else a free slot not in `excluded`.
    private static func claimSlot(heartbeat: HeartbeatService, locks: LockManager, device: any BlockDevice, header: VolumeHeader,
                                  identity: HostIdentity, excluding excluded: Set<Int>, adoptFileLocks: Bool,
                                  interruption: Interruption) throws(VMFSError)
        -> (membership: HeartbeatService.Membership, reclaimed: Bool, adopted: Set<Int>) {
        var region = try heartbeat.refresh()
        let size = FormatConstants.sectorSize
        let layout = header.layout
        while let repair = MaintenanceClaim.maintenanceSlot(in: region, layout: layout, volumeID: header.volumeID) {
            guard try MaintenanceClaim.clearIfAbandoned(repair.slot, raw: repair.raw, heartbeat: heartbeat,
                                                        volumeDeadIntervalMs: header.deadIntervalMs, interruption: interruption) else {
                throw MaintenanceClaim.refusal(repair.slot)
            }
            region = try heartbeat.refresh()
        }
        for index in 0..<Int(layout.maxHosts) {
            let raw = Array(region[(index * size)..<((index + 1) * size)])
            guard let slot = try? HeartbeatSlot.decode(raw, index: index, volumeID: header.volumeID,
                                                        address: layout.heartbeatSlot(index)),
                  slot.owner == identity.uuid, slot.state == .live else { continue }
            let (membership, adopted) = try reclaim(slot: slot, raw: raw, heartbeat: heartbeat, locks: locks, device: device,
                                                    header: header, adoptFileLocks: adoptFileLocks, interruption: interruption)
            return (membership, true, adopted)
        }
        return (try heartbeat.claimFreeSlot(preferred: nil, excluding: excluded), false, [])
    }

    /// Recovers this host's previous incarnation in `slot` and takes the slot over.
    private static func reclaim(slot: HeartbeatSlot, raw: [UInt8], heartbeat: HeartbeatService, locks: LockManager,
                                device: any BlockDevice, header: VolumeHeader, adoptFileLocks: Bool, interruption: Interruption)
        throws(VMFSError) -> (HeartbeatService.Membership, Set<Int>) {
        // The local lock file already proved no process of this machine runs this identity.
        // A slot that still changes is this identity running on another machine: refuse. (The
        // renew interval was bounded when the slot was decoded: at most 45 s of watching.)
        let watch = UInt64(max(slot.renewIntervalMs, 10)) * 1_500_000
        let deadline = Clock.monotonicNanoseconds + watch
        while Clock.monotonicNanoseconds < deadline {
            try interruption.sleep(milliseconds: min(20, max(1, watch / 1_000_000)),
                                   while: "watching heartbeat slot \(slot.index) of this host's previous incarnation")
            let (_, now) = try heartbeat.refreshSlot(slot.index)
            if now != raw {
                throw VMFSError(.busy, "host \(heartbeat.identity.uuid) is active on this volume in slot \(slot.index) "
                                + "from another machine (its heartbeat is changing)")
            }
        }
        let layout = header.layout
        // The crashed incarnation's queued writes must fail at the target before its journal is replayed.
        try heartbeat.storageFence?.preempt(slot.fencingKey)
        heartbeat.setProvisional(slot.index)
        defer { heartbeat.setProvisional(nil) }
        let issued = Clock.monotonicNanoseconds
        var replaying = heartbeat.ownedImage(index: slot.index, state: .replaying, generation: slot.generation &+ 1, basedOn: slot)
        replaying.replayer = heartbeat.identity.uuid
        replaying.replayerSlot = slot.index
        replaying.replayerGeneration = slot.generation &+ 1
        replaying.recoveringGeneration = slot.generation
        guard try heartbeat.write(slot: replaying, expected: raw) == .written else {
            throw VMFSError(.busy, "heartbeat slot \(slot.index) of this host's previous incarnation changed while reclaiming it")
        }
        heartbeat.fence.renewed(issuedAt: issued)
        let scan = try JournalReplay.scan(device: device, layout: layout, volumeID: header.volumeID, slot: slot.index)
        _ = try JournalReplay.replay(scan, device: device, layout: layout, volumeID: header.volumeID)
        let writer = JournalWriter(device: device, layout: layout, volumeID: header.volumeID, slot: slot.index,
                                   host: heartbeat.identity.uuid, startSequence: scan.nextSequence)
        try writer.reset()
        // Adopted file locks name the coming LIVE generation: until it is written, observers see a
        // newer holder than the slot and treat it as alive, so nobody can take them meanwhile.
        let adopted = adoptFileLocks
            ? try locks.transferFileLocks(slot: slot.index, from: slot.generation, to: replaying.generation &+ 1) : []
        _ = try locks.releaseAll(heldBySlot: slot.index, generation: slot.generation)
        let issuedLive = Clock.monotonicNanoseconds
        let live = heartbeat.ownedImage(index: slot.index, state: .live, generation: replaying.generation &+ 1, basedOn: replaying)
        let replayingRaw = replaying.encoded(volumeID: header.volumeID, address: layout.heartbeatSlot(slot.index))
        guard try heartbeat.write(slot: live, expected: replayingRaw, ownerUpdate: true) == .written else {
            throw VMFSError(.busy, "heartbeat slot \(slot.index) was taken over while this host replayed its journal")
        }
        let membership = HeartbeatService.Membership(slot: slot.index, generation: live.generation)
        heartbeat.become(membership, image: live, issuedAt: issuedLive)
        return (membership, adopted)
    }

    /// Releases the file locks adopted from the previous incarnation that no open file uses.
    func releaseAdoptedLocks() throws(VMFSError) {
        let adopted = state.withLock { s -> Set<Int> in
            defer { s.adoptedLocks = [] }
            return s.adoptedLocks
        }
        for index in adopted {
            let slot = index - 1
            // Under the slot's lock: an open of this host meanwhile makes the lock its own.
            try slotLocks.withLock(slot) { () throws(VMFSError) in
                guard openFile(slot) == nil, claimHoldingSlotLock(slot) else { return }
                defer { unclaim(slot: slot) }
                try locks.release(index, kind: .fileDescriptor)
                store.evict(lockIndex: index)
            }
        }
    }

    /// Stops taking part without releasing anything: commits, stops the committer and the
    /// heartbeat, and leaves the slot, the journal (empty) and every lock as they are, for the
    /// next incarnation of this host to reclaim (``MountOptions/adoptFileLocks``).
    ///
    /// The session writes nothing afterwards: a handle still in use gets ``VMFSError/Code/staleHandle``.
    /// Otherwise a late write would renew the slot (``FenceState``'s renewer) under the next
    /// incarnation's feet, making its reclaim fail, or, once it has reclaimed, find the slot taken
    /// and report this host's membership lost (whose handler stops the VMs being adopted).
    func handOver() throws(VMFSError) {
        let committer = state.withLock { s -> BackgroundThread? in
            s.closed = true
            let thread = s.committer
            s.committer = nil
            return thread
        }
        committer?.join()
        var firstError: VMFSError?
        if fence.lostReason == nil {
            do throws(VMFSError) { try store.commit() } catch { firstError = error }
        }
        try? heartbeat.stop(release: false)
        fence.markLost("this host's membership of the volume was handed over to its next incarnation")
        if let firstError { throw firstError }
    }

    /// Starts the heartbeat and the background committer.
    func start(onLost: @escaping @Sendable (String) -> Void) {
        lostHandler.withLock { $0 = onLost }
        heartbeat.setCallbacks(
            lost: { [weak self] reason in self?.handleLoss(reason) },
            observed: { [weak self] in self?.recoverDeadHosts() })
        recovery.onRecovered { [weak self] _ in self?.cleanUpOrphans() }
        fence.setRenewer { [weak self] in self?.heartbeat.renewOnce() ?? false }
        heartbeat.start()
        let interval = UInt64(options.commitIntervalMs)
        let committer = BackgroundThread(name: "vmfs-commit") { [weak self] in
            var elapsed: UInt64 = 0
            while let session = self, !session.state.withLock({ $0.closed }) {
                Clock.sleep(milliseconds: 10)
                elapsed += 10
                if elapsed < interval { continue }
                elapsed = 0
                if session.store.dirtyCount > 0 { try? session.store.commit() }
                session.blocks.releaseIdle()
                session.pointers.releaseIdle()
            }
        }
        state.withLock { $0.committer = committer }
        recoverDeadHosts()
        cleanUpOrphans()
    }

    // MARK: Leaving

    /// Leaves cleanly: closes files, commits, releases every lock, empties the journal, frees the slot.
    func leave() throws(VMFSError) {
        let (files, committer) = state.withLock { s -> ([OpenFile], BackgroundThread?) in
            s.closed = true
            let files = Array(s.openFiles.values)
            let thread = s.committer
            s.committer = nil
            return (files, thread)
        }
        committer?.join()
        waitForBackgroundWork()
        var firstError: VMFSError?
        if fence.lostReason == nil {
            do throws(VMFSError) {
                for file in files {
                    try slotLocks.withLock(file.slot) { () throws(VMFSError) in try finishClose(file, force: true) }
                }
                // Unlinked files a crashed host left (recovered meanwhile): freed before leaving,
                // not only by the next host that mounts.
                freeAbandonedOrphans(untilClosed: false)
                try store.commit()
                blocks.releaseIdle(force: true)
                pointers.releaseIdle(force: true)
                try journal.reset()
            } catch {
                firstError = error
            }
        }
        do { try heartbeat.stop(release: firstError == nil && fence.lostReason == nil) } catch {
            if firstError == nil { firstError = error }
        }
        if firstError == nil { storageFence?.leave() }
        if let firstError { throw firstError }
    }

    /// Registers this membership's key at the LUN when the volume fences through persistent reservations.
    static func joinStorageFence(header: VolumeHeader, device: any BlockDevice, fence: FenceState) throws(VMFSError) -> StorageFence? {
        guard header.fencing == .persistentReservation else { return nil }
        guard let storage = device as? any SCSIStorage else {
            throw VMFSError(.unsupported, "the volume fences hosts with SCSI persistent reservations, which needs the LUN itself: "
                            + "open it as iscsi://host/target-iqn/lun, not through \(device.path)",
                            location: .init(device: device.path, structure: "volume header", offset: 377))
        }
        return try StorageFence.join(storage: storage, fence: fence)
    }

    /// Abandons the session without writing (the slot was lost, or the process is going down hard).
    func abandon() {
        let committer = state.withLock { s -> BackgroundThread? in
            s.closed = true
            let t = s.committer
            s.committer = nil
            return t
        }
        committer?.join()
        waitForBackgroundWork()
        try? heartbeat.stop(release: false)
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Runs `work` on a thread of its own that leaving waits for: work a session starts by itself
    /// (recovering dead hosts, freeing orphans) never touches the volume after the session has
    /// left it. `work` checks ``isClosed`` between steps and stops once it is set; nothing is
    /// started once the session is closed.
    func inBackground(_ name: String, _ work: @escaping @Sendable (Session) -> Void) {
        let started = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.backgroundWork += 1
            return true
        }
        guard started else { return }
        BackgroundThread.detach(name: name) { [self] in
            defer { state.withLock { $0.backgroundWork -= 1 } }
            work(self)
        }
    }

    /// Waits until the work started with ``inBackground(_:_:)`` has stopped (the session is closed).
    private func waitForBackgroundWork() {
        _ = state.wait(for: { $0.backgroundWork == 0 }) { _ in }
    }

    // MARK: Loss and recovery of others

    private func handleLoss(_ reason: String) {
        let error = VMFSError(.fenced, "this host lost its heartbeat slot: \(reason)")
        store.discardAll(reason: error)
        let files = state.withLock { s -> [OpenFile] in
            s.closed = true
            return Array(s.openFiles.values)
        }
        for file in files { file.state.withLock { $0.stale = reason } }
        lostHandler.withLock { $0 }?(reason)
    }

    /// Recovers every slot that looks dead, on a background thread.
    func recoverDeadHosts() {
        guard options.automaticRecovery, !options.readOnly, !isClosed else { return }
        let dead = observations.slotsNeedingRecovery(own: membership.slot)
        for slot in dead {
            let start = state.withLock { s -> Bool in
                if s.recovering.contains(slot) { return false }
                s.recovering.insert(slot)
                return true
            }
            guard start else { continue }
            // Not waiting while another host replays the slot keeps leaving prompt; the next
            // observation tries again if that host dies too.
            inBackground("vmfs-recover") { session in
                _ = try? session.recovery.recover(slot: slot, waitForOthers: false)
                session.state.withLock { _ = $0.recovering.remove(slot) }
            }
        }
    }

    // MARK: Open files

    func openFile(_ slot: Int) -> OpenFile? { state.withLock { $0.openFiles[slot] } }

    func register(_ file: OpenFile) { state.withLock { $0.openFiles[file.slot] = file } }

    func unregister(_ file: OpenFile) {
        state.withLock { s in
            if s.openFiles[file.slot] === file { s.openFiles[file.slot] = nil }
        }
    }

    var openFileCount: Int { state.withLock { $0.openFiles.count } }

    /// Marks `slot` as being worked on by this host outside an open file (create, remove,
    /// orphan cleanup), so that no other thread of this host opens it or uses its descriptor
    /// lock meanwhile. The caller holds the slot's lock (``slotLocks``). Returns false when the
    /// slot is open here or already claimed.
    func claimHoldingSlotLock(_ slot: Int) -> Bool {
        state.withLock { s in
            if s.openFiles[slot] != nil || s.claimedSlots.contains(slot) { return false }
            s.claimedSlots.insert(slot)
            return true
        }
    }

    /// Claims `slot` (see ``claimHoldingSlotLock(_:)``) without waiting: false also while
    /// another thread of this host opens or closes it.
    func tryClaim(slot: Int) -> Bool {
        guard slotLocks.tryLock(slot) else { return false }
        defer { slotLocks.unlock(slot) }
        return claimHoldingSlotLock(slot)
    }

    /// True while a create, remove or orphan cleanup of this host works on `slot`.
    func isClaimed(_ slot: Int) -> Bool { state.withLock { $0.claimedSlots.contains(slot) } }

    /// Ends a claim, after the slot's on-disk lock was released or handed to an open file.
    func unclaim(slot: Int) { state.withLock { _ = $0.claimedSlots.remove(slot) } }

    func checkWritable() throws(VMFSError) {
        if options.readOnly { throw VMFSError(.readOnly, "the volume is mounted read-only") }
        try fence.checkWritable()
    }

    var lockDeadline: UInt64 { Clock.monotonicNanoseconds + UInt64(options.lockWaitMs) * 1_000_000 }
    var tableDeadline: UInt64 { Clock.monotonicNanoseconds + UInt64(options.tableLockWaitMs) * 1_000_000 }
    var allocationDeadline: UInt64 { Clock.monotonicNanoseconds + 30_000_000_000 }
}
