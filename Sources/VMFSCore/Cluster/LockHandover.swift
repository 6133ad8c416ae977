/// The host a lock handover goes to, as lock records name holders.
public struct LockHolderIdentity: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The host's UUID, canonical text form.
    public var host: String
    public var slot: Int
    public var generation: UInt64

    public init(host: String, slot: Int, generation: UInt64) {
        self.host = host
        self.slot = slot
        self.generation = generation
    }

    public var description: String { "host \(host) (slot \(slot), generation \(generation))" }
}

/// A handover of file locks from one host to another (live migration), as both sides record it.
public struct LockHandover: Codable, Sendable, Equatable {
    /// The record whose single update decides the handover (the first file's lock).
    public var primaryLock: Int
    /// Every lock of the handover, the primary first.
    public var locks: [Int]
    public var giver: LockHolderIdentity
    public var taker: LockHolderIdentity

    public init(primaryLock: Int, locks: [Int], giver: LockHolderIdentity, taker: LockHolderIdentity) {
        self.primaryLock = primaryLock
        self.locks = locks
        self.giver = giver
        self.taker = taker
    }
}

/// How a handover ended.
public enum LockHandoverOutcome: String, Codable, Sendable {
    /// The taker owns the locks.
    case committed
    /// The giver kept them.
    case aborted
}

/// Handing exclusive file locks from this host to another in one atomic step (`docs/FORMAT.md`
/// §4.1, `docs/MIGRATION.md`).
///
/// 1. *Prepare* (giver): every record goes from `[giver]` to `[giver, taker]` with the handover
///    flag and the primary's index. Both hosts are holders, so no third host can take any of them;
///    the giver has stopped writing the files before.
/// 2. *Decide*: exactly one compare-and-write of the primary record: the taker's commit
///    (`[giver, taker]` → `[taker]`) or the giver's abort (`[giver, taker]` → `[giver]`). The
///    compare-and-write lets only the first succeed; the loser reads the winner's record.
/// 3. *Complete* (either side, idempotent): the other records follow the primary.
///
/// If one of the two hosts dies in between, its recovery removes it from every record (after its
/// journal was replayed) and leaves the other alone with the flag: a giver alone aborts, a taker
/// alone commits — the dead host can never write again.
extension LockManager {
    func identity(of me: Me) -> LockHolderIdentity {
        LockHolderIdentity(host: "\(me.identity.uuid)", slot: me.slot, generation: me.generation)
    }

    private func holder(_ identity: LockHolderIdentity) throws(VMFSError) -> LockRecord.Holder {
        guard let uuid = HostUUID(identity.host) else {
            throw VMFSError(.invalidArgument, "'\(identity.host)' is not a host UUID")
        }
        guard identity.slot >= 0, identity.slot < Int(layout.maxHosts) else {
            throw VMFSError(.invalidArgument, "slot \(identity.slot) is outside the volume's \(layout.maxHosts) heartbeat slots")
        }
        return LockRecord.Holder(host: uuid, slot: identity.slot, generation: identity.generation, since: Clock.wallNanoseconds, pid: 0)
    }

    private func matches(_ holder: LockRecord.Holder, _ identity: LockHolderIdentity) -> Bool {
        "\(holder.host)" == identity.host && holder.slot == identity.slot && holder.generation == identity.generation
    }

    /// Rewrites lock `index` with `change` until the compare-and-write succeeds; `change` returns
    /// nil to leave the record as it is (and that record is returned).
    @discardableResult
    private func update(_ index: Int, _ change: (LockRecord) throws(VMFSError) -> LockRecord?) throws(VMFSError) -> LockRecord {
        let address = layout.lockRecord(index)
        for _ in 0..<64 {
            let (record, raw) = try read(index, kind: .fileDescriptor)
            guard var next = try change(record) else { return record }
            next.version &+= 1
            next.changedWallTime = Clock.wallNanoseconds
            if try updater.compareAndWrite(at: address, expected: raw, new: next.encoded(volumeID: volumeID, address: address)) == .written {
                return next
            }
        }
        throw VMFSError(.timedOut, "lock record \(index) keeps changing during a handover",
                        location: .init(structure: "lock record \(index)", offset: address))
    }

    /// Step 1, on the giver: puts every lock (each held exclusively by this host) into the handover.
    /// On failure the records already prepared are taken back.
    func prepareHandover(locks indices: [Int], to taker: LockHolderIdentity) throws(VMFSError) -> LockHandover {
        let me = try currentMe()
        guard let primary = indices.first, Set(indices).count == indices.count,
              indices.allSatisfy({ (1...FormatConstants.maxFiles).contains($0) }) else {
            throw VMFSError(.invalidArgument, "a handover needs distinct file locks")
        }
        let giver = identity(of: me)
        guard giver.host != taker.host || giver.slot != taker.slot else {
            throw VMFSError(.invalidArgument, "a host cannot hand locks over to itself")
        }
        let takerHolder = try holder(taker)
        let handover = LockHandover(primaryLock: primary, locks: indices, giver: giver, taker: taker)
        var prepared: [Int] = []
        do throws(VMFSError) {
            for index in indices {
                try update(index) { (record) throws(VMFSError) -> LockRecord? in
                    guard record.mode == .exclusive, record.holders.count == 1, isMe(record.holders[0], me), record.handover == nil else {
                        throw VMFSError(.busy, "lock record \(index) is not held exclusively by this host alone; it cannot be handed over")
                    }
                    var next = record
                    next.holders.append(takerHolder)
                    next.handover = LockRecord.Handover(primaryIndex: primary)
                    next.releaseRequested = false
                    return next
                }
                prepared.append(index)
            }
        } catch {
            for index in prepared.reversed() {
                _ = try? settle(index, of: handover, outcome: .aborted)
            }
            throw error
        }
        return handover
    }

    /// Step 2 for the taker: the one compare-and-write that gives it the primary record. Returns
    /// `.aborted` when the giver took the locks back first (or the handover is not there).
    func commitHandover(_ handover: LockHandover) throws(VMFSError) -> LockHandoverOutcome {
        let me = try currentMe()
        guard identity(of: me) == handover.taker else {
            throw VMFSError(.invalidArgument, "this host (\(identity(of: me))) is not the taker of the handover (\(handover.taker))")
        }
        var outcome = LockHandoverOutcome.aborted
        try update(handover.primaryLock) { record -> LockRecord? in
            let mine = record.holders.firstIndex { isMe($0, me) }
            guard record.handover?.primaryIndex == handover.primaryLock, let mine else {
                // Committed earlier by this host (a retry), or taken back by the giver.
                outcome = record.handover == nil && record.holders.count == 1 && isMe(record.holders[0], me) ? .committed : .aborted
                return nil
            }
            // The giver is still there, or was recovered away: either way it writes no more.
            guard record.holders.allSatisfy({ isMe($0, me) || matches($0, handover.giver) }) else {
                outcome = .aborted
                return nil
            }
            var next = record
            next.holders = [record.holders[mine]]
            next.handover = nil
            outcome = .committed
            return next
        }
        if outcome == .committed { try completeHandover(handover, outcome: .committed) }
        return outcome
    }

    /// Step 2 for the giver: takes the primary record back. Returns `.committed` when the taker
    /// committed first: then the locks are the taker's and this host must not use the files.
    func abortHandover(_ handover: LockHandover) throws(VMFSError) -> LockHandoverOutcome {
        let me = try currentMe()
        guard identity(of: me) == handover.giver else {
            throw VMFSError(.invalidArgument, "this host (\(identity(of: me))) is not the giver of the handover (\(handover.giver))")
        }
        var outcome = LockHandoverOutcome.committed
        try update(handover.primaryLock) { record -> LockRecord? in
            let mine = record.holders.firstIndex { isMe($0, me) }
            guard let mine else {
                outcome = .committed  // the record names the taker only (or nobody): the locks are gone
                return nil
            }
            guard record.handover?.primaryIndex == handover.primaryLock else {
                outcome = .aborted  // already taken back
                return nil
            }
            var next = record
            next.holders = [record.holders[mine]]
            next.handover = nil
            outcome = .aborted
            return next
        }
        try completeHandover(handover, outcome: outcome)
        return outcome
    }

    /// Step 3: makes every other record of the handover follow the decision (idempotent; either
    /// side may run it, and run it again).
    func completeHandover(_ handover: LockHandover, outcome: LockHandoverOutcome) throws(VMFSError) {
        for index in handover.locks where index != handover.primaryLock {
            try settle(index, of: handover, outcome: outcome)
        }
    }

    private func settle(_ index: Int, of handover: LockHandover, outcome: LockHandoverOutcome) throws(VMFSError) {
        let keep = outcome == .committed ? handover.taker : handover.giver
        try update(index) { record -> LockRecord? in
            guard record.handover?.primaryIndex == handover.primaryLock,
                  let kept = record.holders.first(where: { matches($0, keep) }) else { return nil }
            var next = record
            next.holders = [kept]
            next.handover = nil
            return next
        }
    }
}
