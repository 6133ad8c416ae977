import Synchronization

/// Allocates data blocks or pointer blocks from resource clusters this host leases.
///
/// A host holds the lock of each cluster it allocates from, so hosts writing concurrently work
/// in different clusters and never allocate one item twice. Each host starts its search at a
/// cluster derived from its heartbeat slot ("host affinity"). Leases are given back when a
/// cluster is full, idle for a commit interval, or another host asks for it.
///
/// Items freed in a transaction are not handed out again until that transaction has committed,
/// so a crash can never leave one block referenced by two files.
final class ClusterAllocator: Sendable {
    private struct Held {
        var lockIndex: Int
        var free: Int
        var usedSinceCommit = true
        /// Operations about to free items in this cluster; it is not given back meanwhile.
        var pins = 0
    }

    private struct State {
        var held: [Int: Held] = [:]
        var reserved = 0
        var pendingFree: Set<UInt64> = []
        var freeHints: [Int]? = nil
        var allocations = 0
        var frees = 0
    }

    let pool: ClusterBitmap.Pool
    let store: MetadataStore
    let locks: LockManager
    let layout: VolumeLayout
    let volumeID: UInt64
    let affinity: Int
    private let state = Monitor<State>(State())
    /// Serializes read-modify-write of one cluster's bitmap among this host's threads.
    private let bitmapLocks = KeyedLocks<Int>()
    /// Serializes taking and giving back the lease of one cluster among this host's threads.
    /// The on-disk lock is re-entrant for the host, so without this two threads could both
    /// "lease" a cluster (the second overwriting the first's free count and pins), or one could
    /// lease it while another was giving the on-disk lock back.
    private let leaseLocks = KeyedLocks<Int>()

    init(pool: ClusterBitmap.Pool, store: MetadataStore, locks: LockManager, layout: VolumeLayout, volumeID: UInt64, slot: Int) {
        self.pool = pool
        self.store = store
        self.locks = locks
        self.layout = layout
        self.volumeID = volumeID
        let count = Int(clusterCount(pool, layout))
        affinity = count == 0 ? 0 : (slot * count / Int(layout.maxHosts)) % count
    }

    private var itemsPerCluster: Int {
        Int(pool == .blocks ? layout.blocksPerCluster : layout.nodesPerCluster)
    }
    private var totalItems: UInt64 { pool == .blocks ? layout.totalBlocks : UInt64(layout.pointerNodeCount) }
    var clusters: Int { Int(clusterCount(pool, layout)) }
    private var kind: LockRecord.ObjectKind { pool == .blocks ? .blockCluster : .pointerCluster }
    private var noun: String { pool == .blocks ? "block" : "pointer-block" }

    func lockIndex(ofCluster c: Int) -> Int {
        pool == .blocks ? layout.blockClusterLock(c) : layout.pointerClusterLock(c)
    }
    func bitmapAddress(_ c: Int) -> UInt64 { pool == .blocks ? layout.blockBitmap(c) : layout.pointerBitmap(c) }
    func cluster(of item: UInt64) -> Int { Int(item / UInt64(itemsPerCluster)) }
    func itemCount(ofCluster c: Int) -> Int {
        let first = UInt64(c) * UInt64(itemsPerCluster)
        return Int(min(UInt64(itemsPerCluster), totalItems - min(first, totalItems)))
    }

    /// Decodes cluster `c`'s bitmap from the store (the lock must be held).
    func bitmap(_ c: Int) throws(VMFSError) -> ClusterBitmap {
        let address = bitmapAddress(c)
        let bytes = try store.sector(address, lockIndex: lockIndex(ofCluster: c))
        return try ClusterBitmap.decode(bytes, pool: pool, index: c, firstItem: UInt64(c) * UInt64(itemsPerCluster),
                                        itemCount: itemCount(ofCluster: c), volumeID: volumeID, address: address)
    }

    private func store(_ bitmap: ClusterBitmap) throws(VMFSError) {
        let address = bitmapAddress(bitmap.index)
        try store.put(address, lockIndex: lockIndex(ofCluster: bitmap.index)) { version in
            var copy = bitmap
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }

    // MARK: Leasing (outside operations)

    /// Free counts of every cluster, read without locks (a hint for where to look).
    private func readHints() throws(VMFSError) -> [Int] {
        let count = clusters
        let base = pool == .blocks ? layout.blockBitmapOffset : layout.pointerBitmapOffset
        let region = try store.device.read(count: count * FormatConstants.sectorSize, at: base)
        var hints: [Int] = []
        for c in 0..<count {
            let raw = Array(region[(c * FormatConstants.sectorSize)..<((c + 1) * FormatConstants.sectorSize)])
            let reader = ByteReader(raw)
            if reader.isAllZero {
                hints.append(itemCount(ofCluster: c) - (c == 0 ? 1 : 0))
            } else if reader.u32(0) == SectorMagic.bitmap.rawValue {
                hints.append(min(Int(reader.u32(40)), itemCount(ofCluster: c)))
            } else {
                hints.append(0)
            }
        }
        return hints
    }

    /// Makes sure this host leases clusters with at least `count` unreserved free items, and
    /// reserves them for the caller's next operation.
    ///
    /// - Throws: ``VMFSError/Code/noSpace`` when the volume has not enough free items.
    func reserve(_ count: Int, deadline: UInt64) throws(VMFSError) {
        guard count > 0 else { return }
        var refreshedHints = false
        while true {
            let satisfied = state.withLock { s -> Bool in
                let available = s.held.values.reduce(0) { $0 + $1.free } - s.reserved
                if available >= count {
                    s.reserved += count
                    return true
                }
                return false
            }
            if satisfied { return }
            if try leaseAnotherCluster() { continue }
            // Items freed by the running transaction become usable once it commits.
            if state.withLock({ !$0.pendingFree.isEmpty }) {
                try store.commit()
                continue
            }
            if !refreshedHints {
                refreshedHints = true
                state.withLock { $0.freeHints = nil }
                continue
            }
            let hints = try readHints()
            let heldClusters = state.withLock { Set($0.held.keys) }
            let elsewhere = hints.enumerated().filter { !heldClusters.contains($0.offset) }.reduce(0) { $0 + $1.element }
            let available = state.withLock { s in s.held.values.reduce(0) { $0 + $1.free } - s.reserved }
            if elsewhere + available < count || Clock.monotonicNanoseconds >= deadline {
                throw VMFSError(.noSpace, "no free \(noun)s left on the volume for \(count) more "
                                + "(\(elsewhere) free in clusters leased by other hosts)")
            }
            // Free items exist in clusters other hosts lease: ask them, wait, retry.
            for (c, free) in hints.enumerated() where free > 0 && !heldClusters.contains(c) {
                try? locks.requestRelease(lockIndex(ofCluster: c), kind: kind)
            }
            try locks.interruption.sleep(milliseconds: 20, while: "waiting for other hosts to give back \(noun) clusters")
            state.withLock { $0.freeHints = nil }
        }
    }

    /// Gives back `count` reserved items the operation did not use.
    func unreserve(_ count: Int) {
        guard count > 0 else { return }
        state.withLock { $0.reserved = max(0, $0.reserved - count) }
    }

    /// Tries to lease one more cluster that has free items (without waiting). Returns false when
    /// none could be taken.
    private func leaseAnotherCluster() throws(VMFSError) -> Bool {
        let hints: [Int]
        if let cached = state.withLock({ $0.freeHints }) { hints = cached } else {
            hints = try readHints()
            state.withLock { $0.freeHints = hints }
        }
        let count = clusters
        let held = state.withLock { Set($0.held.keys) }
        for i in 0..<count {
            let c = (affinity + i) % count
            guard !held.contains(c), hints[c] > 0 else { continue }
            switch try leaseIfFree(c) {
            case .leased(let free) where free > 0: return true
            case .alreadyHeld: return true  // another thread leased it meanwhile: look again
            case .leased, .busy: continue
            }
        }
        return false
    }

    private enum LeaseOutcome {
        case leased(free: Int)
        case alreadyHeld
        case busy
    }

    /// Takes the lease of cluster `c` without waiting, unless this host already leases it.
    private func leaseIfFree(_ c: Int) throws(VMFSError) -> LeaseOutcome {
        // Another thread leasing or giving back this cluster may be waiting for another host:
        // try the next cluster instead of queueing behind it.
        guard leaseLocks.tryLock(c) else { return .busy }
        defer { leaseLocks.unlock(c) }
        if state.withLock({ $0.held[c] != nil }) { return .alreadyHeld }
        guard try locks.tryAcquire(lockIndex(ofCluster: c), kind: kind, mode: .exclusive) != nil else { return .busy }
        return .leased(free: try recordLease(of: c, pinned: false))
    }

    /// Records the lease of cluster `c`, whose on-disk lock this host has just taken: reads its
    /// bitmap (giving the lock back if that fails) and returns its free items.
    private func recordLease(of c: Int, pinned: Bool) throws(VMFSError) -> Int {
        let bitmap: ClusterBitmap
        do throws(VMFSError) {
            bitmap = try bitmapLocks.withLock(c) { () throws(VMFSError) in try self.bitmap(c) }
        } catch {
            try? locks.release(lockIndex(ofCluster: c), kind: kind)
            throw error
        }
        let free = freeExcludingPending(bitmap)
        state.withLock { s in
            s.held[c] = Held(lockIndex: lockIndex(ofCluster: c), free: free)
            if pinned { s.held[c]?.pins += 1 }
            s.freeHints?[c] = free
        }
        return free
    }

    /// Pins cluster `c` if this host leases it.
    private func pinIfHeld(_ c: Int) -> Bool {
        state.withLock { s -> Bool in
            guard s.held[c] != nil else { return false }
            s.held[c]?.pins += 1
            return true
        }
    }

    private func freeExcludingPending(_ bitmap: ClusterBitmap) -> Int {
        let pending = state.withLock { $0.pendingFree }
        var free = 0
        for i in 0..<bitmap.itemCount where !bitmap.isAllocated(i) {
            if !pending.contains(bitmap.firstItem + UInt64(i)) { free += 1 }
        }
        return free
    }

    /// Leases the clusters of `items` (waiting for other hosts if needed) and pins them for
    /// `body`, which frees items in them.
    func withClustersHeld<T>(of items: [UInt64], deadline: UInt64, _ body: () throws(VMFSError) -> T) throws(VMFSError) -> T {
        let needed = Set(items.filter(isValid).map { cluster(of: $0) }).sorted()
        var pinned: [Int] = []
        defer { state.withLock { s in for c in pinned { s.held[c]?.pins -= 1 } } }
        for c in needed {
            if !pinIfHeld(c) {
                try leaseLocks.withLock(c) { () throws(VMFSError) in
                    if pinIfHeld(c) { return }  // leased by another thread meanwhile
                    try locks.acquire(lockIndex(ofCluster: c), kind: kind, mode: .exclusive,
                                      objectName: "\(noun) cluster \(c)", deadline: deadline, askHolderToRelease: true)
                    _ = try recordLease(of: c, pinned: true)
                }
            }
            pinned.append(c)
        }
        return try body()
    }

    /// True when `item` is an allocatable item of this pool (not the reserved item 0, inside the volume).
    func isValid(_ item: UInt64) -> Bool { item > 0 && item < totalItems }

    /// Whether the bitmap marks `item` allocated (see ``currentBitmap(ofCluster:)``).
    func isAllocated(_ item: UInt64) throws(VMFSError) -> Bool {
        guard isValid(item) else { return false }
        let bitmap = try currentBitmap(ofCluster: cluster(of: item))
        return bitmap.isAllocated(Int(item - bitmap.firstItem))
    }

    /// Cluster `c`'s bitmap as it stands: this host's copy when it leases the cluster, else the
    /// device's, read without the lock (and read again if caught mid-write).
    func currentBitmap(ofCluster c: Int) throws(VMFSError) -> ClusterBitmap {
        let leased = try bitmapLocks.withLock(c) { () throws(VMFSError) -> ClusterBitmap? in
            state.withLock { $0.held[c] != nil } ? try self.bitmap(c) : nil
        }
        if let leased { return leased }
        let address = bitmapAddress(c)
        var attempt = 0
        while true {
            do throws(VMFSError) {
                return try ClusterBitmap.decode(try store.readVerified(address), pool: pool, index: c,
                                                firstItem: UInt64(c) * UInt64(itemsPerCluster),
                                                itemCount: itemCount(ofCluster: c), volumeID: volumeID, address: address)
            } catch {
                attempt += 1
                if attempt == 3 { throw error }
                Clock.sleep(milliseconds: 1)
            }
        }
    }

    /// True when this host leases the cluster of `item`.
    func holdsCluster(of item: UInt64) -> Bool { state.withLock { $0.held[cluster(of: item)] != nil } }

    // MARK: Allocation (inside operations)

    /// Allocates one item from a leased cluster, consuming one reserved item.
    func allocate() throws(VMFSError) -> UInt64 {
        let candidates = state.withLock { s in
            s.held.filter { $0.value.free > 0 }.keys.sorted { ($0 - affinity + clusters) % clusters < ($1 - affinity + clusters) % clusters }
        }
        for c in candidates {
            let found = try bitmapLocks.withLock(c) { () throws(VMFSError) -> UInt64? in
                guard state.withLock({ $0.held[c] != nil }) else { return nil }
                var bitmap = try self.bitmap(c)
                let pending = state.withLock { $0.pendingFree }
                // One pass over the cluster; items freed by uncommitted transactions are skipped.
                var start = 0
                while let i = bitmap.nextFree(from: start) {
                    let item = bitmap.firstItem + UInt64(i)
                    if pending.contains(item) {
                        start = i + 1
                        continue
                    }
                    bitmap.set(i, allocated: true)
                    try store(bitmap)
                    state.withLock { s in
                        s.held[c]?.free -= 1
                        s.held[c]?.usedSinceCommit = true
                        s.reserved = max(0, s.reserved - 1)
                        s.allocations += 1
                    }
                    return item
                }
                state.withLock { $0.held[c]?.free = 0 }
                return nil
            }
            if let found { return found }
        }
        throw VMFSError(.noSpace, "no reserved free \(noun) in the clusters this host leases")
    }

    /// Frees `item`; its cluster must be leased. It becomes reusable after the next commit.
    func free(_ item: UInt64) throws(VMFSError) {
        guard isValid(item) else {
            throw VMFSError(.corrupt, "freeing \(noun) \(item), which is outside the volume")
        }
        let c = cluster(of: item)
        guard state.withLock({ $0.held[c] != nil }) else {
            throw VMFSError(.invalidArgument, "freeing \(noun) \(item) without leasing its cluster \(c)")
        }
        try bitmapLocks.withLock(c) { () throws(VMFSError) in
            var bitmap = try self.bitmap(c)
            let i = Int(item - bitmap.firstItem)
            guard bitmap.isAllocated(i) else {
                throw VMFSError(.corrupt, "\(noun) \(item) is freed but was not allocated",
                                location: .init(structure: "\(noun) cluster \(c) bitmap", offset: bitmapAddress(c)))
            }
            // Pending before the bit is cleared, under the bitmap lock: an allocation that sees
            // the bit free must also see it pending, or it could hand the item out before the
            // free is committed (and before its data is discarded).
            state.withLock { s in
                s.pendingFree.insert(item)
                s.held[c]?.usedSinceCommit = true
                s.frees += 1
            }
            bitmap.set(i, allocated: false)
            try store(bitmap)
        }
        store.afterCommit { [self] in
            state.withLock { s in
                if s.pendingFree.remove(item) != nil, s.held[c] != nil { s.held[c]?.free += 1 }
            }
        }
    }

    /// After a commit: gives back clusters that are full, idle since the last commit, or wanted
    /// by another host. The caller has just committed, so nothing they protect is dirty.
    func releaseIdle(force: Bool = false) {
        let candidates = state.withLock { s -> [(Int, Held)] in
            var list: [(Int, Held)] = []
            for (c, held) in s.held {
                if force || (!held.usedSinceCommit && s.reserved == 0) || held.free == 0 {
                    list.append((c, held))
                }
                s.held[c]?.usedSinceCommit = false
            }
            return list
        }
        var wanted: [(Int, Held)] = []
        if !force {
            // Clusters another host asked for go back even while in use.
            for (c, held) in state.withLock({ $0.held.map { ($0.key, $0.value) } }) where !candidates.contains(where: { $0.0 == c }) {
                if let (record, _) = try? locks.read(held.lockIndex, kind: kind), record.releaseRequested { wanted.append((c, held)) }
            }
        }
        for (c, held) in candidates + wanted {
            // A thread leasing the cluster right now may wait long for another host: skip it
            // rather than hold up the commit that called this (but not when giving back all).
            if force { leaseLocks.lock(c) } else if !leaseLocks.tryLock(c) { continue }
            defer { leaseLocks.unlock(c) }
            store.betweenCommits {
                // Under the bitmap lock, so that no allocation dirties the cluster between the
                // check and giving the lease back; between commits, so that a bitmap committed
                // a moment ago is also home on the device before another host may read it.
                let stillIdle = bitmapLocks.withLock(c) { () -> Bool in
                    if store.hasDirty(lockIndex: held.lockIndex) { return false }
                    return state.withLock { s -> Bool in
                        guard let held = s.held[c] else { return false }
                        if held.pins > 0 { return false }
                        if !force && s.reserved > 0 { return false }
                        s.held[c] = nil
                        return true
                    }
                }
                guard stillIdle else { return }
                try? locks.release(held.lockIndex, kind: kind)
                store.evict(lockIndex: held.lockIndex)
            }
        }
    }

    /// Clusters currently leased.
    var leasedClusters: [Int] { state.withLock { $0.held.keys.sorted() } }

    /// Allocations and frees since mount.
    var counts: (allocations: Int, frees: Int) { state.withLock { ($0.allocations, $0.frees) } }
}

private func clusterCount(_ pool: ClusterBitmap.Pool, _ layout: VolumeLayout) -> UInt32 {
    pool == .blocks ? layout.blockClusterCount : layout.pointerClusterCount
}
