/// Opening and closing files: the on-disk file lock is held while any handle of this host is
/// open, in the strongest mode its handles need.
extension Session {
    private func satisfies(_ held: LockRecord.Mode, _ wanted: LockRecord.Mode) -> Bool {
        switch (held, wanted) {
        case (.exclusive, _): true
        case (.multiWriter, .multiWriter), (.multiWriter, .readOnly): true
        case (.readOnly, .readOnly): true
        default: false
        }
    }

    private func combined(_ held: LockRecord.Mode, _ wanted: LockRecord.Mode) -> LockRecord.Mode? {
        switch (held, wanted) {
        case (.readOnly, .exclusive): .exclusive
        case (.readOnly, .multiWriter): .multiWriter
        default: nil
        }
    }

    /// Opens the file in `slot` (with `generation`, when given) for `access`.
    ///
    /// `byName`: the caller found the file by its name. A file unlinked while open here can still
    /// be opened by slot and generation (as POSIX lets a process reopen an open, unlinked file),
    /// never by a name it no longer has.
    func open(slot: Int, generation: UInt32?, name: String, access: FileAccess, byName: Bool = true) throws(VMFSError) -> OpenFile {
        if access != .readOnly { try checkWritable() }
        guard slot >= 0, slot < FormatConstants.maxFiles else { throw VMFSError(.notFound, "no file slot \(slot)") }
        let lockIndex = FormatConstants.descriptorLockIndex(slot: slot)
        let wanted = access.lockMode
        return try slotLocks.withLock(slot) { () throws(VMFSError) -> OpenFile in
            // A create, remove or orphan cleanup of this host owns the slot's lock right now.
            if isClaimed(slot) { throw VMFSError(.notFound, "'\(name)' is being removed or replaced") }
            if let file = openFile(slot) {
                if let generation, file.generation != generation {
                    throw VMFSError(.staleHandle, "file slot \(slot) was reused")
                }
                try file.checkUsable()
                if byName && file.state.withLock({ $0.orphaned }) {
                    throw VMFSError(.notFound, "'\(name)' was removed")
                }
                let held = file.state.withLock { $0.lockMode }
                if !satisfies(held, wanted) {
                    guard let next = combined(held, wanted) else {
                        throw VMFSError(.busy, "'\(name)' is open \(held) on this host; it cannot also be opened \(access)")
                    }
                    if store.hasDirty(lockIndex: lockIndex) { try store.commit() }
                    try locks.acquire(lockIndex, kind: .fileDescriptor, mode: next, objectName: "file '\(name)'", deadline: lockDeadline)
                    file.state.withLock { $0.lockMode = next }
                }
                file.state.withLock { s in
                    switch access {
                    case .readOnly: s.readers += 1
                    case .readWrite: s.writers += 1
                    case .multiWriter: s.multiWriters += 1
                    }
                }
                return file
            }
            try locks.acquire(lockIndex, kind: .fileDescriptor, mode: wanted, objectName: "file '\(name)'", deadline: lockDeadline)
            do throws(VMFSError) {
                let descriptor = try lockedDescriptor(slot)
                guard descriptor.inUse, !descriptor.isOrphan else {
                    throw VMFSError(.notFound, "'\(name)' no longer exists")
                }
                if let generation, descriptor.generation != generation {
                    throw VMFSError(.staleHandle, "file slot \(slot) was reused")
                }
                let file = OpenFile(descriptor: descriptor, lockMode: wanted, name: name)
                file.state.withLock { s in
                    switch access {
                    case .readOnly: s.readers = 1
                    case .readWrite: s.writers = 1
                    case .multiWriter: s.multiWriters = 1
                    }
                }
                register(file)
                return file
            } catch {
                try? locks.release(lockIndex, kind: .fileDescriptor)
                store.evict(lockIndex: lockIndex)
                throw error
            }
        }
    }

    /// Closes one handle of `file`. The last close commits and releases the lock; an unlinked
    /// file is freed then.
    func close(_ file: OpenFile, access: FileAccess) throws(VMFSError) {
        try slotLocks.withLock(file.slot) { () throws(VMFSError) in
            let remaining = file.state.withLock { s -> Int in
                switch access {
                case .readOnly: s.readers = max(0, s.readers - 1)
                case .readWrite: s.writers = max(0, s.writers - 1)
                case .multiWriter: s.multiWriters = max(0, s.multiWriters - 1)
                }
                return s.readers + s.writers + s.multiWriters
            }
            if remaining == 0 {
                try finishClose(file, force: false)
                return
            }
            // Only readers left: let other hosts read too.
            let (mode, writers, multi, orphaned) = file.state.withLock { ($0.lockMode, $0.writers, $0.multiWriters, $0.orphaned) }
            if mode == .exclusive && writers == 0 && multi == 0 && !orphaned && file.state.withLock({ $0.stale }) == nil {
                try store.commit()
                try locks.acquire(file.lockIndex, kind: .fileDescriptor, mode: .readOnly, objectName: "file")
                file.state.withLock { $0.lockMode = .readOnly }
            }
        }
    }

    /// Ends this host's use of `file`: commit, free it if it was unlinked, release its lock.
    /// The caller holds the slot's lock (``Session/slotLocks``).
    func finishClose(_ file: OpenFile, force: Bool) throws(VMFSError) {
        defer { unregister(file) }
        if file.state.withLock({ $0.stale }) != nil { return }
        if file.state.withLock({ $0.orphaned }) && !options.readOnly {
            try freeOrphan(file.descriptor, file: file)
            return
        }
        if store.hasDirty(lockIndex: file.lockIndex) || file.state.withLock({ $0.lockMode }) != .readOnly {
            try store.commit()
        }
        try locks.release(file.lockIndex, kind: .fileDescriptor)
        store.evict(lockIndex: file.lockIndex)
    }

    /// Frees every block of an unlinked file whose lock this host holds exclusively, marks its
    /// descriptor free, commits and releases the lock.
    /// Without `existing`, the caller has claimed the slot (``Session/claimHoldingSlotLock(_:)``);
    /// it is unclaimed here, after the lock is released.
    func freeOrphan(_ descriptor: FileDescriptorRecord, file existing: OpenFile? = nil) throws(VMFSError) {
        defer { if existing == nil { unclaim(slot: descriptor.slot) } }
        let file = existing ?? OpenFile(descriptor: descriptor, lockMode: .exclusive, name: descriptor.nameHint)
        try file.withMetadataLock { () throws(VMFSError) in
            try freeRange(file, from: 0, to: BlockMapGeometry.reachInBlocks, onlyWritten: false)
            try store.operation { () throws(VMFSError) in
                var freed = FileDescriptorRecord(slot: file.slot)
                freed.generation = file.descriptor.generation
                freed.inUse = false
                try storeDescriptor(freed)
                file.state.withLock { $0.descriptor = freed }
            }
        }
        try store.commit()
        try locks.release(file.lockIndex, kind: .fileDescriptor)
        store.evict(lockIndex: file.lockIndex)
    }

    /// Frees unlinked files whose owners are gone (left by a crash mid-unlink), in the background.
    /// ``leave()`` waits for it.
    func cleanUpOrphans() {
        guard !options.readOnly else { return }
        inBackground("vmfs-orphans") { session in session.freeAbandonedOrphans(untilClosed: true) }
    }

    /// Frees every unlinked file whose descriptor lock is free (its owner closed it, or crashed
    /// and was recovered). Files another thread of this host is working on are skipped.
    /// `untilClosed`: stop when the session closes (a background pass).
    func freeAbandonedOrphans(untilClosed: Bool) {
        guard !options.readOnly, let descriptors = try? allDescriptorsUnlocked() else { return }
        for case let descriptor? in descriptors where descriptor.inUse && descriptor.isOrphan {
            if untilClosed && isClosed { return }
            guard tryClaim(slot: descriptor.slot) else { continue }
            let lockIndex = FormatConstants.descriptorLockIndex(slot: descriptor.slot)
            do throws(VMFSError) {
                guard try locks.tryAcquire(lockIndex, kind: .fileDescriptor, mode: .exclusive) != nil else {
                    unclaim(slot: descriptor.slot)
                    continue
                }
                let fresh = try lockedDescriptor(descriptor.slot)
                if fresh.inUse && fresh.isOrphan {
                    try freeOrphan(fresh)
                } else {
                    try locks.release(lockIndex, kind: .fileDescriptor)
                    store.evict(lockIndex: lockIndex)
                    unclaim(slot: descriptor.slot)
                }
            } catch {
                unclaim(slot: descriptor.slot)
            }
        }
    }
}
