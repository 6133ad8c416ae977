/// Takes and releases on-disk locks through the atomic sector update.
///
/// An uncontended acquire costs one sector read and one atomic update. A lock held by another
/// host is granted only when that holder is gone: its heartbeat generation has moved on (it was
/// recovered, or it restarted and replayed its own journal). A holder whose heartbeat stopped
/// changing is recovered first — its journal is replayed — and only then are its locks taken.
final class LockManager: Sendable {
    /// Who this host is while it holds a slot.
    struct Me: Sendable {
        var identity: HostIdentity
        var slot: Int
        var generation: UInt64
    }

    /// How the holder of a lock looks from here.
    enum HolderStatus: Equatable {
        case me, alive, stale, dead, replaying
    }

    /// The result of one attempt.
    enum Attempt {
        case acquired(LockRecord)
        case busy(LockRecord, [LockRecord.Holder])
        case needsRecovery(slot: Int)
    }

    let updater: any AtomicSectorUpdate
    let device: any BlockDevice
    let layout: VolumeLayout
    let volumeID: UInt64
    let observations: HostObservations
    let membership: @Sendable () -> Me?
    let refreshSlot: @Sendable (Int) throws(VMFSError) -> Void
    let recover: @Sendable (Int) throws(VMFSError) -> Void

    /// Stops waits for busy locks.
    let interruption: Interruption

    init(updater: any AtomicSectorUpdate, device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64, observations: HostObservations,
         membership: @escaping @Sendable () -> Me?, refreshSlot: @escaping @Sendable (Int) throws(VMFSError) -> Void,
         recover: @escaping @Sendable (Int) throws(VMFSError) -> Void, interruption: Interruption = .process) {
        self.interruption = interruption
        self.updater = updater
        self.device = device
        self.layout = layout
        self.volumeID = volumeID
        self.observations = observations
        self.membership = membership
        self.refreshSlot = refreshSlot
        self.recover = recover
    }

    func currentMe() throws(VMFSError) -> Me {
        guard let me = membership() else {
            throw VMFSError(.fenced, "this host holds no heartbeat slot on the volume")
        }
        return me
    }

    /// Reads lock `index` (one sector read).
    ///
    /// The read is not atomic with another process's compare-and-write of the sector (buffered
    /// I/O copies pages without a lock), so a record that fails its checksum is read again a
    /// few times before it counts as damaged.
    func read(_ index: Int, kind: LockRecord.ObjectKind) throws(VMFSError) -> (LockRecord, [UInt8]) {
        let address = layout.lockRecord(index)
        var attempt = 0
        while true {
            let raw = try updater.read(at: address)
            do throws(VMFSError) {
                return (try LockRecord.decode(raw, index: index, kind: kind, volumeID: volumeID, address: address), raw)
            } catch where error.code == .corrupt && attempt < 4 {
                attempt += 1
                Clock.sleep(milliseconds: 1)
            }
        }
    }

    func isMe(_ holder: LockRecord.Holder, _ me: Me) -> Bool {
        holder.host == me.identity.uuid && holder.slot == me.slot && holder.generation == me.generation
    }

    /// Classifies a holder against what this host has seen of its heartbeat slot.
    func status(of holder: LockRecord.Holder, me: Me) -> HolderStatus {
        if isMe(holder, me) { return .me }
        guard holder.slot < Int(layout.maxHosts) else { return .stale }
        var observation = observations.observation(holder.slot)
        if (observation?.slot.generation).map({ $0 < holder.generation }) ?? true {
            // Our view predates the holder's claim: look again before judging.
            try? refreshSlot(holder.slot)
            observation = observations.observation(holder.slot)
        }
        guard let observation else { return .alive }
        let slot = observation.slot
        if slot.state == .replaying && slot.recoveringGeneration == holder.generation { return .replaying }
        if slot.generation > holder.generation { return .stale }
        if slot.generation < holder.generation { return .alive }
        switch slot.state {
        case .free: return .stale
        case .replaying: return .replaying
        case .live:
            return observations.liveness(of: holder.slot, own: me.slot) == .dead ? .dead : .alive
        case .maintenance:
            return .alive  // a repair holds no locks; never take one from it
        }
    }

    private static func compatible(_ requested: LockRecord.Mode, with existing: LockRecord.Mode) -> Bool {
        switch (requested, existing) {
        case (.readOnly, .readOnly), (.multiWriter, .multiWriter): true
        default: false
        }
    }

    /// One attempt to hold `index` in `mode` (re-reads and retries on races).
    func attempt(_ index: Int, kind: LockRecord.ObjectKind, mode: LockRecord.Mode) throws(VMFSError) -> Attempt {
        precondition(mode != .free)
        let me = try currentMe()
        for _ in 0..<64 {
            let (record, raw) = try read(index, kind: kind)
            var remaining: [LockRecord.Holder] = []
            for holder in record.holders {
                switch status(of: holder, me: me) {
                case .me, .stale: continue
                case .dead: return .needsRecovery(slot: holder.slot)
                case .alive, .replaying: remaining.append(holder)
                }
            }
            if !remaining.isEmpty && !Self.compatible(mode, with: record.mode) {
                return .busy(record, remaining)
            }
            if remaining.count + 1 > FormatConstants.maxLockHolders {
                return .busy(record, remaining)
            }
            let mine = record.holders.first { isMe($0, me) }
            if mine != nil && remaining.count == record.holders.count - 1 && record.mode == mode && !record.releaseRequested {
                return .acquired(record)  // already held exactly like this
            }
            var next = record
            next.mode = mode
            next.holders = remaining + [LockRecord.Holder(host: me.identity.uuid, slot: me.slot, generation: me.generation,
                                                          since: mine?.since ?? Clock.wallNanoseconds,
                                                          pid: UInt32(truncatingIfNeeded: processID()))]
            next.version &+= 1
            next.releaseRequested = false
            next.handover = nil
            next.changedWallTime = Clock.wallNanoseconds
            let address = layout.lockRecord(index)
            switch try updater.compareAndWrite(at: address, expected: raw, new: next.encoded(volumeID: volumeID, address: address)) {
            case .written: return .acquired(next)
            case .mismatch: continue
            }
        }
        throw VMFSError(.timedOut, "lock record \(index) keeps changing under contention",
                        location: .init(structure: "lock record \(index)", offset: layout.lockRecord(index)))
    }

    /// Holds `index` in `mode`, waiting until `deadline` (monotonic ns) while other live hosts hold it.
    ///
    /// - Parameter objectName: Names the object in the busy message, for example `file 'vm.vmdk'`.
    /// - Throws: ``VMFSError/Code/busy`` naming the holder host and since when.
    @discardableResult
    func acquire(_ index: Int, kind: LockRecord.ObjectKind, mode: LockRecord.Mode, objectName: String,
                 deadline: UInt64? = nil, askHolderToRelease: Bool = false) throws(VMFSError) -> LockRecord {
        var backoff: UInt64 = 2_000_000
        var asked = false
        while true {
            switch try attempt(index, kind: kind, mode: mode) {
            case .acquired(let record):
                return record
            case .needsRecovery(let slot):
                try recover(slot)
            case .busy(let record, let holders):
                if let deadline, Clock.monotonicNanoseconds < deadline {
                    try interruption.check("waiting for \(objectName), which another host holds")
                    if askHolderToRelease && !asked {
                        asked = true
                        try? requestRelease(index, kind: kind)
                    }
                    Clock.sleep(nanoseconds: backoff)
                    backoff = min(backoff * 3 / 2, 50_000_000)
                    continue
                }
                throw busyError(objectName: objectName, record: record, holders: holders)
            }
        }
    }

    /// Like ``acquire(_:kind:mode:objectName:deadline:askHolderToRelease:)`` without waiting:
    /// `nil` when live hosts hold it.
    func tryAcquire(_ index: Int, kind: LockRecord.ObjectKind, mode: LockRecord.Mode) throws(VMFSError) -> LockRecord? {
        for _ in 0..<4 {
            switch try attempt(index, kind: kind, mode: mode) {
            case .acquired(let record): return record
            case .busy: return nil
            case .needsRecovery(let slot): try recover(slot)
            }
        }
        return nil
    }

    func busyError(objectName: String, record: LockRecord, holders: [LockRecord.Holder]) -> VMFSError {
        let described = holders.map { holder -> String in
            let name = observations.observation(holder.slot)?.slot.ownerName ?? ""
            let label = name.isEmpty ? "" : "\(name), "
            return "host \(holder.host) (\(label)slot \(holder.slot)) since \(formatWallTime(holder.since))"
        }
        let who = described.isEmpty ? "another host" : described.joined(separator: "; ")
        return VMFSError(.busy, "\(objectName) is locked \(record.mode) by \(who)",
                         location: .init(structure: "lock record \(record.index)", offset: layout.lockRecord(record.index)))
    }

    /// Drops this host from lock `index` (a no-op when it no longer holds it).
    func release(_ index: Int, kind: LockRecord.ObjectKind) throws(VMFSError) {
        let me = try currentMe()
        for _ in 0..<64 {
            let (record, raw) = try read(index, kind: kind)
            guard record.holders.contains(where: { isMe($0, me) }) else { return }
            var next = record
            next.removeHolders { isMe($0, me) }
            next.version &+= 1
            next.changedWallTime = Clock.wallNanoseconds
            let address = layout.lockRecord(index)
            if try updater.compareAndWrite(at: address, expected: raw, new: next.encoded(volumeID: volumeID, address: address)) == .written {
                return
            }
        }
        throw VMFSError(.timedOut, "could not release lock record \(index) under contention")
    }

    /// Changes the mode this host holds `index` in (it must be the only holder for exclusive).
    func change(_ index: Int, kind: LockRecord.ObjectKind, to mode: LockRecord.Mode, objectName: String) throws(VMFSError) -> LockRecord {
        try acquire(index, kind: kind, mode: mode, objectName: objectName)
    }

    /// Sets the "release requested" flag so a holder that honours it lets go soon.
    func requestRelease(_ index: Int, kind: LockRecord.ObjectKind) throws(VMFSError) {
        let (record, raw) = try read(index, kind: kind)
        guard record.mode != .free, !record.releaseRequested else { return }
        var next = record
        next.releaseRequested = true
        next.version &+= 1
        let address = layout.lockRecord(index)
        _ = try updater.compareAndWrite(at: address, expected: raw, new: next.encoded(volumeID: volumeID, address: address))
    }

    /// Frees every lock held by (`slot`, `generation`), the incarnation of a host being recovered.
    /// Returns how many lock records were changed.
    func releaseAll(heldBySlot slot: Int, generation: UInt64) throws(VMFSError) -> Int {
        let count = Int(layout.lockCount)
        let region = try device.read(count: count * FormatConstants.sectorSize, at: layout.lockOffset)
        var changed = 0
        for index in 0..<count {
            let raw = Array(region[(index * FormatConstants.sectorSize)..<((index + 1) * FormatConstants.sectorSize)])
            if ByteReader(raw).isAllZero { continue }
            let kind = Self.kind(ofLock: index, layout: layout)
            guard var record = try? LockRecord.decode(raw, index: index, kind: kind, volumeID: volumeID,
                                                      address: layout.lockRecord(index)),
                  record.holders.contains(where: { $0.slot == slot && $0.generation == generation }) else { continue }
            var expected = raw
            for _ in 0..<16 {
                record.removeHolders { $0.slot == slot && $0.generation == generation }
                record.version &+= 1
                record.changedWallTime = Clock.wallNanoseconds
                let address = layout.lockRecord(index)
                switch try updater.compareAndWrite(at: address, expected: expected, new: record.encoded(volumeID: volumeID, address: address)) {
                case .written:
                    changed += 1
                case .mismatch(let current):
                    guard let reread = try? LockRecord.decode(current, index: index, kind: kind, volumeID: volumeID, address: address),
                          reread.holders.contains(where: { $0.slot == slot && $0.generation == generation }) else { break }
                    record = reread
                    expected = current
                    continue
                }
                break
            }
        }
        return changed
    }

    /// Moves every file lock held by (`slot`, `generation`) to (`slot`, `newGeneration`): a host
    /// reclaiming its own previous incarnation keeps the files its still-running users (VMs)
    /// hold, with no moment at which another host could take them. Returns the lock indices moved.
    func transferFileLocks(slot: Int, from generation: UInt64, to newGeneration: UInt64) throws(VMFSError) -> Set<Int> {
        var moved: Set<Int> = []
        for index in 1...FormatConstants.maxFiles {
            let address = layout.lockRecord(index)
            for _ in 0..<16 {
                let raw = try updater.read(at: address)
                if ByteReader(raw).isAllZero { break }
                guard var record = try? LockRecord.decode(raw, index: index, kind: .fileDescriptor, volumeID: volumeID, address: address),
                      let position = record.holders.firstIndex(where: { $0.slot == slot && $0.generation == generation }) else { break }
                record.holders[position].generation = newGeneration
                record.version &+= 1
                record.changedWallTime = Clock.wallNanoseconds
                if try updater.compareAndWrite(at: address, expected: raw, new: record.encoded(volumeID: volumeID, address: address)) == .written {
                    moved.insert(index)
                    break
                }
            }
        }
        return moved
    }

    /// The object kind of lock `index` in this layout.
    static func kind(ofLock index: Int, layout: VolumeLayout) -> LockRecord.ObjectKind {
        if index == FormatConstants.tableLockIndex { return .fileTable }
        if index >= 1 && index <= FormatConstants.maxFiles { return .fileDescriptor }
        if index < FormatConstants.firstClusterLock { return .volume }
        if index < FormatConstants.firstClusterLock + Int(layout.blockClusterCount) { return .blockCluster }
        return .pointerCluster
    }
}
