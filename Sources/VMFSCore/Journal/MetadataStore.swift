import Synchronization

/// This host's view of the metadata sectors it works on, and its running transaction.
///
/// Every metadata change is made to a cached sector image and recorded as dirty in the running
/// transaction. A commit journals all dirty images in one transaction, flushes, then writes them
/// home (and to their mirror). Operations run inside ``withOperation(budget:_:)``; a commit waits
/// for running operations to finish, so one operation's changes always land in one transaction.
///
/// Sectors are cached only while this host holds the lock that protects them; releasing a lock
/// commits first, then evicts what it protected.
final class MetadataStore: Sendable {
    struct Cached {
        var image: [UInt8]
        var lockIndex: Int
        /// The decoded pointer block, kept so the hot read path does not re-validate the sector.
        var node: PointerNode?
    }

    private struct State {
        var cache: [UInt64: Cached] = [:]
        var dirty: [UInt64] = []
        var dirtySet: Set<UInt64> = []
        var activeOperations = 0
        var reserved = 0
        var failed: VMFSError?
        var postCommit: [@Sendable () -> Void] = []
        /// A commit waits for running operations; new ones wait for it.
        var commitWaiting = false
    }

    let device: any BlockDevice
    let layout: VolumeLayout
    let volumeID: UInt64
    let journal: JournalWriter
    let ownerGeneration: UInt64
    private let state = Monitor<State>(State())
    private let commitSerial = KeyedLocks<Int>()
    private let commitCount = Mutex<Int>(0)

    /// Most sectors one operation may dirty.
    static let operationBudget = 48

    init(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64, journal: JournalWriter, ownerGeneration: UInt64) {
        self.device = device
        self.layout = layout
        self.volumeID = volumeID
        self.journal = journal
        self.ownerGeneration = ownerGeneration
    }

    private var limit: Int { journal.maxRecords }

    // MARK: Operations and commits

    /// Runs `body` as one atomic metadata operation dirtying at most `budget` sectors.
    func withOperation<T, E: Error>(budget: Int = operationBudget, _ body: () throws(E) -> T) throws -> T {
        try enter(budget: budget)
        defer { exit(budget: budget) }
        return try body()
    }

    /// Typed-throws variant for VMFSError bodies.
    func operation<T>(budget: Int = operationBudget, _ body: () throws(VMFSError) -> T) throws(VMFSError) -> T {
        try enter(budget: budget)
        defer { exit(budget: budget) }
        return try body()
    }

    private func enter(budget: Int) throws(VMFSError) {
        precondition(budget <= limit, "operation budget exceeds the journal's transaction size")
        while true {
            if let failed = state.withLock({ $0.failed }) { throw failed }
            let entered = state.wait(until: Clock.monotonicNanoseconds + 50_000_000, for: { s in
                !s.commitWaiting && s.dirty.count + s.reserved + budget <= self.limit
            }) { s -> Bool in
                s.activeOperations += 1
                s.reserved += budget
                return true
            }
            if entered == true { return }
            // The running transaction is full: commit it (outside any operation).
            if state.withLock({ $0.dirty.count + $0.reserved + budget > self.limit }) {
                try commit()
            }
        }
    }

    private func exit(budget: Int) {
        state.withLock { s in
            s.activeOperations -= 1
            s.reserved -= budget
        }
    }

    /// Runs `body` while no commit is in flight (none has a snapshot it is still writing home),
    /// so that "nothing dirty" also means "everything on the device". `body` must not commit.
    func betweenCommits<T>(_ body: () -> T) -> T {
        commitSerial.withLock(0) { body() }
    }

    /// Sectors dirty in the running transaction.
    var dirtyCount: Int { state.withLock { $0.dirty.count } }

    /// Commits completed since mount.
    var commits: Int { commitCount.withLock { $0 } }

    /// Schedules `action` to run after the next commit completes (freed blocks become reusable,
    /// discards are issued).
    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        state.withLock { $0.postCommit.append(action) }
    }

    /// Journals every dirty sector, then writes them home. Returns when they are durable in the
    /// journal and written home.
    func commit() throws(VMFSError) {
        try commitSerial.withLock(0) { () throws(VMFSError) in
            if let failed = state.withLock({ $0.failed }) { throw failed }
            // Wait for running operations (holding off new ones), then take the dirty set.
            state.withLock { $0.commitWaiting = true }
            let (snapshot, actions) = state.wait(for: { $0.activeOperations == 0 }) { s -> ([(UInt64, [UInt8])], [@Sendable () -> Void]) in
                let records = s.dirty.compactMap { address in s.cache[address].map { (address, $0.image) } }
                let actions = s.postCommit
                s.dirty.removeAll()
                s.dirtySet.removeAll()
                s.postCommit.removeAll()
                s.commitWaiting = false
                return (records, actions)
            } ?? ([], [])
            if snapshot.isEmpty {
                actions.forEach { $0() }
                return
            }
            let sequence: UInt64
            do throws(VMFSError) {
                sequence = try journal.commit(records: snapshot.map { (address: $0.0, image: $0.1) },
                                              ownerGeneration: ownerGeneration)
            } catch {
                // Not committed: keep the changes dirty so a later commit can retry.
                state.withLock { s in
                    for (address, _) in snapshot where !s.dirtySet.contains(address) {
                        s.dirty.append(address)
                        s.dirtySet.insert(address)
                    }
                }
                state.withLock { $0.postCommit.insert(contentsOf: actions, at: 0) }
                throw error
            }
            do throws(VMFSError) {
                try writeHome(snapshot)
            } catch {
                // Durable in the journal but not at home: only a replay can reconcile this.
                let failure = VMFSError(.io, "metadata committed to the journal could not be written home "
                                        + "(\(error.message)); the volume must be remounted to replay it",
                                        location: error.location)
                state.withLock { $0.failed = failure }
                throw failure
            }
            journal.homeWritten(through: sequence)
            commitCount.withLock { $0 += 1 }
            actions.forEach { $0() }
        }
    }

    private func writeHome(_ records: [(UInt64, [UInt8])]) throws(VMFSError) {
        var buffers: [AlignedBuffer] = []
        var batch: [DeviceRequest] = []
        for (address, image) in records {
            let buffer = AlignedBuffer(copying: image)
            buffers.append(buffer)
            batch.append(DeviceRequest(kind: .write, offset: address, buffer: buffer.bytes))
            if let mirror = layout.mirror(of: address) {
                batch.append(DeviceRequest(kind: .write, offset: mirror, buffer: buffer.bytes))
            }
        }
        try withExtendedLifetime(buffers) { () throws(VMFSError) in try device.perform(batch) }
    }

    // MARK: Sectors

    /// The latest image of a sector this host holds `lockIndex` for (cached after the first read).
    func sector(_ address: UInt64, lockIndex: Int) throws(VMFSError) -> [UInt8] {
        if let cached = state.withLock({ $0.cache[address]?.image }) { return cached }
        let image = try readVerified(address)
        state.withLock { s in
            if s.cache[address] == nil { s.cache[address] = Cached(image: image, lockIndex: lockIndex) }
        }
        return state.withLock { $0.cache[address]?.image } ?? image
    }

    /// Reads a sector from the device without caching it: the primary, or the mirror when the
    /// primary fails validation. Pristine sectors are returned as zeros.
    func readVerified(_ address: UInt64) throws(VMFSError) -> [UInt8] {
        let primary = try device.read(count: FormatConstants.sectorSize, at: address)
        guard let magic = layout.expectedMagic(at: address) else { return primary }
        do {
            _ = try SectorCodec.open(primary, magic: magic, volumeID: volumeID, address: address)
            return primary
        } catch {
            guard let mirrorAddress = layout.mirror(of: address) else { throw error }
            let mirror = try device.read(count: FormatConstants.sectorSize, at: mirrorAddress)
            if (try? SectorCodec.open(mirror, magic: magic, volumeID: volumeID, address: address)) != nil { return mirror }
            throw error
        }
    }

    /// A pointer block from the cache (decoded once per change), reading it if needed.
    func pointerNode(_ address: UInt64, number: UInt32, lockIndex: Int) throws(VMFSError) -> PointerNode {
        if let node = state.withLock({ $0.cache[address]?.node }) { return node }
        let image = try sector(address, lockIndex: lockIndex)
        let node = try PointerNode.decode(image, number: number, volumeID: volumeID, address: address)
        state.withLock { s in
            // Only if the cached image is still the one decoded: a sector changed again within
            // one transaction keeps its version, so a version check could keep a stale node.
            if let cached = s.cache[address], cached.image == image { s.cache[address]?.node = node }
        }
        return node
    }

    /// Records a new image for `address`. `encode` receives the version to stamp: one more than
    /// the cached version the first time the sector is dirtied in this transaction.
    func put(_ address: UInt64, lockIndex: Int, _ encode: (UInt64) -> [UInt8]) throws(VMFSError) {
        let current = try sector(address, lockIndex: lockIndex)
        state.withLock { s in
            let base = SectorCodec.version(of: current)
            let version = s.dirtySet.contains(address) ? base : base &+ 1
            s.cache[address] = Cached(image: encode(version), lockIndex: lockIndex)
            if !s.dirtySet.contains(address) {
                s.dirty.append(address)
                s.dirtySet.insert(address)
            }
        }
    }

    /// Records the first image of a sector whose old contents do not matter (a newly allocated
    /// pointer block): the version continues from whatever either copy holds, valid or not, so
    /// that no stale journal image of the sector can ever look newer.
    func initialize(_ address: UInt64, lockIndex: Int, _ encode: (UInt64) -> [UInt8]) throws(VMFSError) {
        let cached = state.withLock { $0.cache[address]?.image }
        var base = cached.map { SectorCodec.version(of: $0) } ?? 0
        if cached == nil {
            base = SectorCodec.version(of: try device.read(count: FormatConstants.sectorSize, at: address))
            if let mirror = layout.mirror(of: address) {
                base = max(base, SectorCodec.version(of: try device.read(count: FormatConstants.sectorSize, at: mirror)))
            }
        }
        state.withLock { s in
            let version = s.dirtySet.contains(address) ? base : base &+ 1
            s.cache[address] = Cached(image: encode(version), lockIndex: lockIndex)
            if !s.dirtySet.contains(address) {
                s.dirty.append(address)
                s.dirtySet.insert(address)
            }
        }
    }

    /// Drops cached sectors protected by `lockIndex` (after the lock was released).
    func evict(lockIndex: Int) {
        state.withLock { s in
            s.cache = s.cache.filter { $0.value.lockIndex != lockIndex || s.dirtySet.contains($0.key) }
        }
    }

    /// True when any dirty sector is protected by `lockIndex`.
    func hasDirty(lockIndex: Int) -> Bool {
        state.withLock { s in s.dirty.contains { s.cache[$0]?.lockIndex == lockIndex } }
    }

    /// Forgets everything (the host lost its slot; nothing may be written).
    func discardAll(reason: VMFSError) {
        state.withLock { s in
            s.cache.removeAll()
            s.dirty.removeAll()
            s.dirtySet.removeAll()
            s.failed = reason
            s.postCommit.removeAll()
        }
    }
}
