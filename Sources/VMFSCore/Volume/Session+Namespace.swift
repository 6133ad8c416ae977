#if canImport(Glibc)
internal import Glibc
#endif

/// Creating, removing, renaming and listing files: changes to the name table, made under the
/// file table lock and committed before the lock is released, so other hosts see them at once.
extension Session {
    /// Runs `body` holding the file table lock exclusively; commits before releasing it.
    func withTableLock<T>(_ body: () throws(VMFSError) -> T) throws(VMFSError) -> T {
        // One namespace change at a time on this host: the on-disk lock is per host.
        try namespaceLock.withLock(0) { () throws(VMFSError) -> T in try withTableLockHeld(body) }
    }

    private func withTableLockHeld<T>(_ body: () throws(VMFSError) -> T) throws(VMFSError) -> T {
        try locks.acquire(FormatConstants.tableLockIndex, kind: .fileTable, mode: .exclusive,
                          objectName: "the file table", deadline: tableDeadline)
        let result: T
        do throws(VMFSError) {
            result = try body()
            try store.commit()
        } catch {
            try? store.commit()
            try? locks.release(FormatConstants.tableLockIndex, kind: .fileTable)
            store.evict(lockIndex: FormatConstants.tableLockIndex)
            namespace.invalidate()
            throw error
        }
        try locks.release(FormatConstants.tableLockIndex, kind: .fileTable)
        store.evict(lockIndex: FormatConstants.tableLockIndex)
        namespace.invalidate()
        return result
    }

    private func find(_ name: String, in sectors: [NameTableSector]) -> (sector: Int, entry: Int, NameEntry)? {
        for (s, sector) in sectors.enumerated() {
            for (e, entry) in sector.entries.enumerated() {
                if let entry, entry.name == name { return (s, e, entry) }
            }
        }
        return nil
    }

    /// Creates an empty file. With `access`, the new file is also opened (its lock kept).
    func create(_ name: String, attributes: CreateAttributes, open access: FileAccess?) throws(VMFSError) -> (FileStatus, OpenFile?) {
        try checkWritable()
        if let error = FileName.validationError(name) { throw error }
        return try withTableLock { () throws(VMFSError) -> (FileStatus, OpenFile?) in
            let sectors = try nameSectors()
            let entries = sectors.flatMap { $0.entries.compactMap { $0 } }
            if entries.contains(where: { $0.name == name }) {
                throw VMFSError(.alreadyExists, "a file named '\(name)' already exists")
            }
            guard entries.count < FormatConstants.maxFiles else {
                throw VMFSError(.tooManyFiles, "cannot create '\(name)': the volume holds the maximum of \(FormatConstants.maxFiles) files")
            }
            var position: (Int, Int)?
            search: for (s, sector) in sectors.enumerated() {
                for (e, entry) in sector.entries.enumerated() where entry == nil
                    && s * FormatConstants.nameEntriesPerSector + e < FormatConstants.maxFiles {
                    position = (s, e)
                    break search
                }
            }
            guard let (sectorIndex, entryIndex) = position else {
                throw VMFSError(.tooManyFiles, "cannot create '\(name)': the volume holds the maximum of \(FormatConstants.maxFiles) files")
            }
            let named = Set(entries.map(\.slot))
            var chosen: FileDescriptorRecord?
            for slot in try freeSlotCandidates() where !named.contains(slot) {
                guard tryClaim(slot: slot) else { continue }
                let lockIndex = FormatConstants.descriptorLockIndex(slot: slot)
                guard try locks.tryAcquire(lockIndex, kind: .fileDescriptor, mode: .exclusive) != nil else {
                    unclaim(slot: slot)
                    continue
                }
                let fresh = try lockedDescriptor(slot)
                if fresh.inUse {
                    try locks.release(lockIndex, kind: .fileDescriptor)
                    store.evict(lockIndex: lockIndex)
                    unclaim(slot: slot)
                    continue
                }
                chosen = fresh
                break
            }
            guard let old = chosen else {
                throw VMFSError(.tooManyFiles, "cannot create '\(name)': every free file slot is locked by another host")
            }
            let now = Clock.wallNanoseconds
            var descriptor = FileDescriptorRecord(slot: old.slot)
            descriptor.inUse = true
            descriptor.isInline = true
            descriptor.generation = old.generation &+ 1
            descriptor.mode = UInt32(S_IFREG) | (attributes.mode & 0o7777)
            descriptor.uid = attributes.uid
            descriptor.gid = attributes.gid
            descriptor.accessTime = now
            descriptor.modificationTime = now
            descriptor.changeTime = now
            descriptor.birthTime = now
            descriptor.nameHint = name
            var sector = sectors[sectorIndex]
            sector.entries[entryIndex] = NameEntry(name: name, slot: old.slot, generation: descriptor.generation, created: now)
            try store.operation { () throws(VMFSError) in
                try storeDescriptor(descriptor)
                try storeNameSector(sector)
                try stampDirectory()
            }
            try store.commit()
            let lockIndex = FormatConstants.descriptorLockIndex(slot: old.slot)
            let status = FileStatus(name: name, descriptor: descriptor, blockSize: layout.blockSize)
            defer { unclaim(slot: old.slot) }
            guard let access else {
                try locks.release(lockIndex, kind: .fileDescriptor)
                store.evict(lockIndex: lockIndex)
                return (status, nil)
            }
            let file = OpenFile(descriptor: descriptor, lockMode: .exclusive, name: name)
            file.state.withLock { s in
                switch access {
                case .readOnly: s.readers = 1
                case .readWrite: s.writers = 1
                case .multiWriter: s.multiWriters = 1
                }
            }
            if access != .readWrite {
                _ = try locks.acquire(lockIndex, kind: .fileDescriptor, mode: access.lockMode, objectName: "file '\(name)'")
                file.state.withLock { $0.lockMode = access.lockMode }
            }
            register(file)
            return (status, file)
        }
    }

    /// Removes `name`. A file open on another host cannot be removed (`EBUSY`); one open on this
    /// host disappears from the namespace now and is freed when its last handle closes.
    func remove(_ name: String) throws(VMFSError) {
        try checkWritable()
        let orphan = try withTableLock { () throws(VMFSError) -> FileDescriptorRecord? in
            let sectors = try nameSectors()
            guard let (s, e, entry) = find(name, in: sectors) else {
                throw VMFSError(.notFound, "no file named '\(name)'")
            }
            var sector = sectors[s]
            sector.entries[e] = nil
            return try detach(slot: entry.slot, generation: entry.generation, name: name) { () throws(VMFSError) in
                try storeNameSector(sector)
                try stampDirectory()
            }
        }
        if let orphan { try freeOrphan(orphan) }
    }

    /// Marks the descriptor of a name being removed as an orphan in the same operation as
    /// `changeNames`. Returns the descriptor when this host must free it now (not open here);
    /// the slot is then claimed until ``freeOrphan(_:file:)`` has freed it.
    ///
    /// Runs under the slot's lock (``Session/slotLocks``), so that a close of the last local
    /// handle either finished before (the file is not open here any more: this host takes the
    /// descriptor lock and frees the file) or starts after and finds the file orphaned (and
    /// frees it then); and no open of the slot can take the descriptor lock in between.
    private func detach(slot: Int, generation: UInt32, name: String,
                        changeNames: () throws(VMFSError) -> Void) throws(VMFSError) -> FileDescriptorRecord? {
        let lockIndex = FormatConstants.descriptorLockIndex(slot: slot)
        return try slotLocks.withLock(slot) { () throws(VMFSError) -> FileDescriptorRecord? in
            if let local = openFile(slot), local.generation == generation {
                try local.checkUsable()
                try holdExclusively(local, name: name)
                // Under the file's metadata lock: a concurrent write of this host stores the
                // descriptor too, and neither may lose the other's change.
                try local.withMetadataLock { () throws(VMFSError) in
                    try store.operation { () throws(VMFSError) in
                        var descriptor = local.descriptor
                        descriptor.isOrphan = true
                        descriptor.changeTime = Clock.wallNanoseconds
                        try changeNames()
                        try storeDescriptor(descriptor)
                        local.state.withLock {
                            $0.descriptor = descriptor
                            $0.orphaned = true
                        }
                    }
                }
                return nil
            }
            guard claimHoldingSlotLock(slot) else {
                throw VMFSError(.busy, "'\(name)' is being changed by another operation on this host")
            }
            do throws(VMFSError) {
                try locks.acquire(lockIndex, kind: .fileDescriptor, mode: .exclusive, objectName: "file '\(name)'",
                                  deadline: Clock.monotonicNanoseconds)
            } catch {
                unclaim(slot: slot)
                throw error
            }
            do throws(VMFSError) {
                var descriptor = try lockedDescriptor(slot)
                guard descriptor.inUse, descriptor.generation == generation else {
                    // A dangling name (its file is gone): drop the name and leave the slot alone.
                    try store.operation { () throws(VMFSError) in try changeNames() }
                    try locks.release(lockIndex, kind: .fileDescriptor)
                    store.evict(lockIndex: lockIndex)
                    unclaim(slot: slot)
                    return nil
                }
                descriptor.isOrphan = true
                descriptor.changeTime = Clock.wallNanoseconds
                try store.operation { () throws(VMFSError) in
                    try changeNames()
                    try storeDescriptor(descriptor)
                }
                return descriptor
            } catch {
                try? store.commit()
                try? locks.release(lockIndex, kind: .fileDescriptor)
                store.evict(lockIndex: lockIndex)
                unclaim(slot: slot)
                throw error
            }
        }
    }

    /// Makes sure this host holds the lock of `file` (open here) exclusively before the file is
    /// unlinked: a file open on another host too cannot be removed (`EBUSY`). The slot's lock is held.
    private func holdExclusively(_ file: OpenFile, name: String) throws(VMFSError) {
        guard file.state.withLock({ $0.lockMode }) != .exclusive else { return }
        try locks.acquire(file.lockIndex, kind: .fileDescriptor, mode: .exclusive, objectName: "file '\(name)'",
                          deadline: Clock.monotonicNanoseconds)
        file.state.withLock { $0.lockMode = .exclusive }
    }

    /// Renames `source` to `target` atomically.
    func rename(_ source: String, to target: String, mode: RenameMode) throws(VMFSError) {
        try checkWritable()
        if let error = FileName.validationError(target) { throw error }
        let orphan = try withTableLock { () throws(VMFSError) -> FileDescriptorRecord? in
            let sectors = try nameSectors()
            guard let (ss, se, sourceEntry) = find(source, in: sectors) else {
                throw VMFSError(.notFound, "no file named '\(source)'")
            }
            if source == target { return nil }
            let targetFound = find(target, in: sectors)
            switch mode {
            case .noReplace where targetFound != nil:
                throw VMFSError(.alreadyExists, "cannot rename '\(source)': '\(target)' exists")
            case .exchange:
                guard let (ts, te, targetEntry) = targetFound else {
                    throw VMFSError(.notFound, "cannot exchange '\(source)' with '\(target)': no file named '\(target)'")
                }
                var changed = sectors
                changed[ss].entries[se] = NameEntry(name: source, slot: targetEntry.slot, generation: targetEntry.generation,
                                                    created: targetEntry.created)
                changed[ts].entries[te] = NameEntry(name: target, slot: sourceEntry.slot, generation: sourceEntry.generation,
                                                    created: sourceEntry.created)
                try store.operation { () throws(VMFSError) in
                    try storeNameSector(changed[ss])
                    if ts != ss { try storeNameSector(changed[ts]) }
                    try stampDirectory()
                }
                return nil
            default:
                break
            }
            var changed = sectors
            if let (ts, te, targetEntry) = targetFound {
                changed[ss].entries[se] = nil
                changed[ts].entries[te] = NameEntry(name: target, slot: sourceEntry.slot, generation: sourceEntry.generation,
                                                    created: sourceEntry.created)
                return try detach(slot: targetEntry.slot, generation: targetEntry.generation, name: target) { () throws(VMFSError) in
                    try storeNameSector(changed[ss])
                    if ts != ss { try storeNameSector(changed[ts]) }
                    try stampDirectory()
                }
            }
            changed[ss].entries[se] = NameEntry(name: target, slot: sourceEntry.slot, generation: sourceEntry.generation,
                                                created: sourceEntry.created)
            try store.operation { () throws(VMFSError) in
                try storeNameSector(changed[ss])
                try stampDirectory()
            }
            if let local = openFile(sourceEntry.slot) { local.state.withLock { $0.name = target } }
            return nil
        }
        if let orphan { try freeOrphan(orphan) }
    }

    /// Every file with its current attributes.
    func list() throws(VMFSError) -> [FileStatus] {
        let entries = try namespace.entries()
        let descriptors = try allDescriptorsUnlocked()
        var result: [FileStatus] = []
        for entry in entries {
            let descriptor = openFile(entry.slot)?.descriptor ?? descriptors[entry.slot] ?? (try? unlockedDescriptor(entry.slot))
            guard let descriptor, descriptor.inUse, descriptor.generation == entry.generation else { continue }
            result.append(FileStatus(name: entry.name, descriptor: descriptor, blockSize: layout.blockSize))
        }
        return result.sorted { $0.name < $1.name }
    }

    /// The attributes of `name`.
    func status(of name: String) throws(VMFSError) -> FileStatus {
        for attempt in 0..<3 {
            guard let entry = try namespace.lookup(name) else { throw VMFSError(.notFound, "no file named '\(name)'") }
            let descriptor = try currentDescriptor(entry.slot)
            if descriptor.inUse && descriptor.generation == entry.generation {
                return FileStatus(name: name, descriptor: descriptor, blockSize: layout.blockSize)
            }
            // The name changed under us (another host is recreating it): look again.
            namespace.invalidate()
            if attempt < 2 { Clock.sleep(milliseconds: 2) }
        }
        throw VMFSError(.notFound, "no file named '\(name)'")
    }

    /// The name and attributes of the file in `slot` with `generation`.
    func status(slot: Int, generation: UInt32) throws(VMFSError) -> FileStatus {
        guard slot >= 0, slot < FormatConstants.maxFiles else { throw VMFSError(.notFound, "no file slot \(slot)") }
        let descriptor = try currentDescriptor(slot)
        guard descriptor.inUse, descriptor.generation == generation else {
            throw VMFSError(.staleHandle, "file slot \(slot) generation \(generation) no longer exists")
        }
        let name = try namespace.entries().first { $0.slot == slot && $0.generation == generation }?.name
            ?? openFile(slot)?.state.withLock { $0.name } ?? descriptor.nameHint
        return FileStatus(name: name, descriptor: descriptor, blockSize: layout.blockSize)
    }
}
