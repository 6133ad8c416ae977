import Synchronization

/// This host's heartbeat: claims a slot, renews it every H on its own thread, reads every other
/// slot on the way, and fences the host when its slot is lost.
final class HeartbeatService: Sendable {
    struct Membership: Sendable, Equatable {
        var slot: Int
        var generation: UInt64
    }

    private struct State {
        var membership: Membership?
        var lastRaw: [UInt8] = []
        var lastSlot = HeartbeatSlot(index: 0)
        var running = false
        var thread: BackgroundThread?
        var renewals = 0
        var failedRenewals = 0
    }

    let device: any BlockDevice
    let updater: any AtomicSectorUpdate
    let layout: VolumeLayout
    let volumeID: UInt64
    let identity: HostIdentity
    let timing: HeartbeatTiming
    let observations: HostObservations
    let fence: FenceState
    /// Persistent-reservation fencing of this membership (its key goes into the slot), if the volume uses it.
    let storageFence: StorageFence?
    /// The slot this host is taking over before it is its member (reclaiming its own crashed
    /// incarnation): Disk Paxos ballots use it meanwhile.
    private let provisional = Mutex<Int?>(nil)
    private let state = Mutex<State>(State())
    private let callbacks = Mutex<Callbacks>(Callbacks())

    struct Callbacks {
        /// Called once when the slot is found taken over.
        var lost: (@Sendable (String) -> Void)?
        /// Called after every observation of the region.
        var observed: (@Sendable () -> Void)?
    }

    init(device: any BlockDevice, updater: any AtomicSectorUpdate, layout: VolumeLayout, volumeID: UInt64,
         identity: HostIdentity, timing: HeartbeatTiming, observations: HostObservations, fence: FenceState,
         storageFence: StorageFence? = nil) {
        self.storageFence = storageFence
        self.device = device
        self.updater = updater
        self.layout = layout
        self.volumeID = volumeID
        self.identity = identity
        self.timing = timing
        self.observations = observations
        self.fence = fence
    }

    func setCallbacks(lost: @escaping @Sendable (String) -> Void, observed: @escaping @Sendable () -> Void) {
        callbacks.withLock {
            $0.lost = lost
            $0.observed = observed
        }
    }

    /// The slot and generation this host holds, if any.
    var membership: Membership? { state.withLock { $0.membership } }

    /// The slot this host acts for in Disk Paxos ballots: its own, or the one it is reclaiming.
    var proposerSlot: Int? { membership?.slot ?? provisional.withLock { $0 } }

    /// Marks `slot` as being reclaimed by this host (nil when done).
    func setProvisional(_ slot: Int?) { provisional.withLock { $0 = slot } }

    /// Renewals done and failed so far.
    var renewalCounts: (done: Int, failed: Int) { state.withLock { ($0.renewals, $0.failedRenewals) } }

    // MARK: Region reads

    /// Reads the whole heartbeat region in one I/O and updates the observations.
    @discardableResult
    func refresh() throws(VMFSError) -> [UInt8] {
        let region = try device.read(count: Int(layout.maxHosts) * FormatConstants.sectorSize, at: layout.heartbeatOffset)
        observations.update(region: region, layout: layout, volumeID: volumeID)
        return region
    }

    /// Reads one slot now and folds it into the observations.
    func refreshSlot(_ index: Int) throws(VMFSError) -> (HeartbeatSlot?, [UInt8]) {
        let raw = try updater.read(at: layout.heartbeatSlot(index))
        let slot = try? HeartbeatSlot.decode(raw, index: index, volumeID: volumeID, address: layout.heartbeatSlot(index))
        let region = try device.read(count: Int(layout.maxHosts) * FormatConstants.sectorSize, at: layout.heartbeatOffset)
        observations.update(region: region, layout: layout, volumeID: volumeID)
        return (slot, raw)
    }

    // MARK: Slot images

    /// A slot image owned by this host.
    func ownedImage(index: Int, state slotState: HeartbeatSlot.State, generation: UInt64, basedOn old: HeartbeatSlot) -> HeartbeatSlot {
        var slot = HeartbeatSlot(index: index)
        slot.state = slotState
        slot.generation = generation
        slot.stamp = old.stamp &+ 1
        slot.version = old.version &+ 1
        slot.owner = identity.uuid
        slot.ownerName = identity.name
        slot.ownerPID = UInt32(truncatingIfNeeded: processID())
        slot.renewIntervalMs = timing.renewIntervalMs
        slot.deadIntervalMs = timing.deadIntervalMs
        slot.ioTimeoutMs = timing.ioTimeoutMs
        slot.fencingKey = storageFence?.key ?? 0
        let now = Clock.wallNanoseconds
        slot.lastRenewalWallTime = now
        slot.claimedWallTime = now
        return slot
    }

    /// Compare-and-writes a slot. `ownerUpdate`: the writer owns the slot (renewal, release, a
    /// replayer freeing the slot it replayed), so no other host competes for it.
    func write(slot: HeartbeatSlot, expected raw: [UInt8], ownerUpdate: Bool = false) throws(VMFSError) -> CompareAndWriteResult {
        try updater.compareAndWrite(at: layout.heartbeatSlot(slot.index), expected: raw,
                                    new: slot.encoded(volumeID: volumeID, address: layout.heartbeatSlot(slot.index)),
                                    ownerUpdate: ownerUpdate)
    }

    /// Claims a free slot: FREE(g) → LIVE(g+1) (or another `state`). Prefers `preferred` when it
    /// is free; never takes a slot in `excluded`.
    func claimFreeSlot(preferred: Int?, state slotState: HeartbeatSlot.State = .live,
                       excluding excluded: Set<Int> = []) throws(VMFSError) -> Membership {
        for _ in 0..<8 {
            let region = try refresh()
            let size = FormatConstants.sectorSize
            var candidates: [Int] = []
            if let preferred { candidates.append(preferred) }
            let start = Int(identity.uuid.low64 % UInt64(layout.maxHosts))
            for i in 0..<Int(layout.maxHosts) { candidates.append((start + i) % Int(layout.maxHosts)) }
            for index in candidates where !excluded.contains(index) {
                let raw = Array(region[(index * size)..<((index + 1) * size)])
                guard let slot = try? HeartbeatSlot.decode(raw, index: index, volumeID: volumeID,
                                                           address: layout.heartbeatSlot(index)),
                      slot.state == .free else { continue }
                let issued = Clock.monotonicNanoseconds
                let claimed = ownedImage(index: index, state: slotState, generation: slot.generation &+ 1, basedOn: slot)
                if try write(slot: claimed, expected: raw) == .written {
                    become(Membership(slot: index, generation: claimed.generation), image: claimed, issuedAt: issued)
                    return Membership(slot: index, generation: claimed.generation)
                }
            }
        }
        throw VMFSError(.noSpace, "all \(layout.maxHosts) heartbeat slots of the volume are in use")
    }

    /// Takes ownership after a successful write of `image` issued at `issued`.
    func become(_ membership: Membership, image: HeartbeatSlot, issuedAt issued: UInt64) {
        let raw = image.encoded(volumeID: volumeID, address: layout.heartbeatSlot(membership.slot))
        state.withLock {
            $0.membership = membership
            $0.lastRaw = raw
            $0.lastSlot = image
        }
        fence.renewed(issuedAt: issued)
    }

    // MARK: Renewal

    /// Starts the renewal thread.
    func start() {
        let shouldStart = state.withLock { s -> Bool in
            if s.running { return false }
            s.running = true
            return true
        }
        guard shouldStart else { return }
        let thread = BackgroundThread(name: "vmfs-heartbeat") { [self] in self.loop() }
        state.withLock { $0.thread = thread }
    }

    private func loop() {
        let interval = UInt64(timing.renewIntervalMs) * 1_000_000
        var next = Clock.monotonicNanoseconds + interval
        while state.withLock({ $0.running }) {
            let now = Clock.monotonicNanoseconds
            if now < next {
                Clock.sleep(nanoseconds: min(next - now, 20_000_000))
                continue
            }
            next = now + interval
            renewOnce()
            _ = try? refresh()
            callbacks.withLock { $0.observed }?()
        }
    }

    /// One renewal: compare-and-write of the own slot with stamp + 1. Returns true when it was written.
    @discardableResult
    func renewOnce() -> Bool {
        guard let (membership, raw, slot) = state.withLock({ s -> (Membership, [UInt8], HeartbeatSlot)? in
            guard let m = s.membership else { return nil }
            return (m, s.lastRaw, s.lastSlot)
        }) else { return false }
        if fence.lostReason != nil { return false }
        return renewSerial.withLock(0) { () -> Bool in renew(membership, raw, slot) }
    }

    /// Serializes renewals of the heartbeat thread and of writers renewing on their own.
    private let renewSerial = KeyedLocks<Int>()

    /// Rewrites this host's slot with `change` applied (as a renewal, stamp + 1).
    ///
    /// - Throws: ``VMFSError/Code/fenced`` when the slot is no longer this host's.
    func amend(_ change: @escaping (inout HeartbeatSlot) -> Void) throws(VMFSError) {
        try renewSerial.withLock(0) { () throws(VMFSError) in
            guard let (membership, raw, slot) = state.withLock({ s -> (Membership, [UInt8], HeartbeatSlot)? in
                guard let m = s.membership else { return nil }
                return (m, s.lastRaw, s.lastSlot)
            }) else { throw VMFSError(.fenced, "this host holds no heartbeat slot") }
            var next = slot
            change(&next)
            next.stamp &+= 1
            next.version &+= 1
            next.lastRenewalWallTime = Clock.wallNanoseconds
            let issued = Clock.monotonicNanoseconds
            guard try write(slot: next, expected: raw, ownerUpdate: true) == .written else {
                throw VMFSError(.fenced, "heartbeat slot \(membership.slot) was taken over by another host")
            }
            let newRaw = next.encoded(volumeID: volumeID, address: layout.heartbeatSlot(membership.slot))
            state.withLock {
                $0.lastRaw = newRaw
                $0.lastSlot = next
            }
            fence.renewed(issuedAt: issued)
        }
    }

    private func renew(_ membership: Membership, _ expectedRaw: [UInt8], _ expectedSlot: HeartbeatSlot) -> Bool {
        // Another renewal may have landed while this one waited: start from the latest image.
        let (raw, slot) = state.withLock { s in
            s.membership == membership ? (s.lastRaw, s.lastSlot) : (expectedRaw, expectedSlot)
        }
        let issued = Clock.monotonicNanoseconds
        var next = slot
        next.stamp &+= 1
        next.version &+= 1
        next.lastRenewalWallTime = Clock.wallNanoseconds
        do {
            switch try write(slot: next, expected: raw, ownerUpdate: true) {
            case .written:
                let newRaw = next.encoded(volumeID: volumeID, address: layout.heartbeatSlot(membership.slot))
                state.withLock {
                    $0.lastRaw = newRaw
                    $0.lastSlot = next
                    $0.renewals += 1
                }
                fence.renewed(issuedAt: issued)
                storageFence?.maintainReservation()
                return true
            case .mismatch(let current):
                let found = try? HeartbeatSlot.decode(current, index: membership.slot, volumeID: volumeID,
                                                      address: layout.heartbeatSlot(membership.slot))
                let reason: String
                if let found {
                    reason = "slot \(membership.slot) is now \(found.state) generation \(found.generation) "
                        + "(owner \(found.owner), replayer \(found.replayer)); this host had generation \(membership.generation)"
                } else {
                    reason = "slot \(membership.slot) was overwritten"
                }
                fence.markLost(reason)
                state.withLock { $0.membership = nil }
                callbacks.withLock { $0.lost }?(reason)
                return false
            }
        } catch {
            state.withLock { $0.failedRenewals += 1 }
            return false
        }
    }

    /// Stops renewing; with `release`, frees the slot (LIVE(g) → FREE(g+1)).
    func stop(release: Bool) throws(VMFSError) {
        let thread = state.withLock { s -> BackgroundThread? in
            s.running = false
            let t = s.thread
            s.thread = nil
            return t
        }
        thread?.join()
        guard release, fence.lostReason == nil,
              let (membership, raw, slot) = state.withLock({ s -> (Membership, [UInt8], HeartbeatSlot)? in
                  guard let m = s.membership else { return nil }
                  return (m, s.lastRaw, s.lastSlot)
              }) else { return }
        var free = HeartbeatSlot(index: membership.slot)
        free.state = .free
        free.generation = membership.generation &+ 1
        free.stamp = slot.stamp &+ 1
        free.version = slot.version &+ 1
        free.lastRenewalWallTime = Clock.wallNanoseconds
        free.owner = identity.uuid
        free.ownerName = identity.name
        _ = try write(slot: free, expected: raw, ownerUpdate: true)
        state.withLock { $0.membership = nil }
    }
}
