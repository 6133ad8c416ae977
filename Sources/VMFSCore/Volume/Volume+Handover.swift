/// Handing a running VM's file locks to another host in one atomic step (live migration). See
/// ``LockManager`` (`LockHandover.swift`) for the protocol and `docs/MIGRATION.md` for why no
/// third host can take the files and the two hosts never both write them.
extension Volume {
    /// How this host appears as a lock holder now (nil without a slot).
    public var lockIdentity: LockHolderIdentity? {
        guard let session = try? current() else { return nil }
        return LockHolderIdentity(host: "\(session.identity.uuid)", slot: session.membership.slot,
                                  generation: session.membership.generation)
    }

    /// Giver: makes the files of `handles` (each open read-write here, holding its exclusive lock)
    /// durable — journal committed and written home, device flushed — then puts their locks into
    /// a handover to `taker`. The first handle's lock is the primary record. From here on this
    /// host must not write the files unless ``abortLockHandover(_:)`` returns `.aborted`.
    public func prepareLockHandover(_ handles: [FileHandle], to taker: LockHolderIdentity) throws(VMFSError) -> LockHandover {
        let session = try current()
        try session.checkWritable()
        for handle in handles {
            guard handle.session === session, handle.access == .readWrite else {
                throw VMFSError(.invalidArgument, "only files open read-write through this membership can be handed over")
            }
        }
        try session.sync()
        return try session.locks.prepareHandover(locks: handles.map(\.file.lockIndex), to: taker)
    }

    /// Taker: the atomic step. `.committed`: the locks are this host's (open the files normally);
    /// `.aborted`: the giver kept them.
    public func commitLockHandover(_ handover: LockHandover) throws(VMFSError) -> LockHandoverOutcome {
        let session = try current()
        try session.checkWritable()
        return try session.locks.commitHandover(handover)
    }

    /// Giver: takes the locks back. `.aborted`: they are this host's again and the files may be
    /// written; `.committed`: the taker won, this host must close the files without writing.
    public func abortLockHandover(_ handover: LockHandover) throws(VMFSError) -> LockHandoverOutcome {
        let session = try current()
        try session.checkWritable()
        return try session.locks.abortHandover(handover)
    }

    /// Either side: brings the other records in line with the decision (idempotent).
    public func completeLockHandover(_ handover: LockHandover, outcome: LockHandoverOutcome) throws(VMFSError) {
        try current().locks.completeHandover(handover, outcome: outcome)
    }
}
