import Synchronization

/// Checking that a block a file claims is really its own before data goes into it.
///
/// A preallocated ("unwritten") entry names a block the file has never written. Filling it is
/// the moment its ownership matters: a range check alone would let corrupt metadata point the
/// write at another file's data. So before the first write into such a block this host checks
/// that the allocation bitmap marks it in use, and that no other map entry — of another file,
/// or elsewhere in this one — uses it too. The second check needs every block map of the
/// volume: one pass over them (each pointer block read once, about 0.4 % of the mapped data at
/// 1 MiB blocks) the first time a file open here fills a preallocated block, kept with the open
/// file. Blocks used twice then are looked up again before an error is raised, so a stale pass
/// never refuses a healthy write. (A block another host maps *after* the pass can only collide
/// when the bitmap already disagreed with a map; `fsck.vmfs` finds such damage in full.)
extension Session {
    /// Makes sure data block `number`, which `entry` of `file` maps unwritten at file block
    /// `block`, belongs to the file: the bitmap marks it allocated and no other entry uses it.
    ///
    /// - Throws: ``VMFSError/Code/corrupt`` naming the file, the file block, the block and what
    ///   else claims it.
    func verifyClaim(_ file: OpenFile, block: UInt64, number: UInt64) throws(VMFSError) {
        let reader = map(of: file).reader
        try checkOwned(file, number: number, fileBlock: block)
        let shared = try file.sharedBlocks.withLock { (cached) throws(VMFSError) -> Bitset in
            if let cached { return cached }
            let fresh = try blockUse(for: file, target: nil).shared
            cached = fresh
            return fresh
        }
        guard shared.contains(number) else { return }
        // Used twice when the pass was made: look again now, and name the other users.
        let again = try blockUse(for: file, target: number)
        file.sharedBlocks.withLock { $0 = again.shared }
        let others = again.users.filter { $0 != "\(reader.fileLabel) file block \(block)" }
        guard !others.isEmpty else { return }
        throw reader.corrupt("file block \(block) is preallocated in data block \(number), which another file or block also uses: "
                             + others.joined(separator: ", "))
    }

    /// Checks that the allocation bitmap marks data block `number` (mapped at `fileBlock` of
    /// `file`, checked to lie in the volume) in use: every read and write of a written block
    /// meets this, through a per-open cache of the cluster bitmaps.
    func checkOwned(_ file: OpenFile, number: UInt64, fileBlock: UInt64) throws(VMFSError) {
        let c = blocks.cluster(of: number)
        let bitmap: ClusterBitmap
        if let cached = file.ownedClusters.withLock({ $0[c] }) {
            bitmap = cached
        } else {
            bitmap = try blocks.currentBitmap(ofCluster: c)
            file.ownedClusters.withLock { $0[c] = bitmap }
        }
        guard bitmap.isAllocated(Int(number - bitmap.firstItem)) else {
            throw map(of: file).reader.corrupt("file block \(fileBlock) maps data block \(number), which the allocation bitmap marks free")
        }
    }

    /// Records that `file` now maps data block `number`, just allocated to it (keeps the cache
    /// of ``checkOwned(_:number:fileBlock:)`` true).
    func noteOwned(_ file: OpenFile, number: UInt64) {
        let c = blocks.cluster(of: number)
        file.ownedClusters.withLock { clusters in
            guard var bitmap = clusters[c] else { return }
            bitmap.set(Int(number - bitmap.firstItem), allocated: true)
            clusters[c] = bitmap
        }
    }

    /// What one pass over every block map of the volume found: blocks mapped more than once,
    /// and who maps `target`.
    private struct BlockUse {
        var shared: Bitset
        var users: [String] = []
    }

    /// Counts every map entry of every file in use: `file` as this host holds it, the others as
    /// the device has them (read without their locks; damaged parts are passed over).
    private func blockUse(for file: OpenFile, target: UInt64?) throws(VMFSError) -> BlockUse {
        var seen = Bitset(count: layout.totalBlocks)
        var use = BlockUse(shared: Bitset(count: layout.totalBlocks))
        let names = Dictionary((try? namespace.entries())?.map { ($0.slot, $0.name) } ?? [], uniquingKeysWith: { first, _ in first })
        let store = store
        let layout = layout
        let volumeID = volumeID
        // Every map counts, also those of files a host would refuse for a size or count out of range.
        let onDisk = try allDescriptorsUnlocked(validation: .forRepair)
        for slot in 0..<FormatConstants.maxFiles {
            let reader: BlockMapReader
            if slot == file.slot {
                reader = map(of: file).reader
            } else {
                guard let descriptor = onDisk[slot] else { continue }
                reader = BlockMapReader(layout: layout, descriptor: descriptor,
                                        fileName: names[slot] ?? descriptor.nameHint) { (number) throws(VMFSError) in
                    let address = layout.pointerNode(number)
                    return try PointerNode.decode(try store.readVerified(address), number: number, volumeID: volumeID, address: address)
                }
            }
            guard reader.descriptor.inUse, !reader.descriptor.isInline else { continue }
            try reader.forEachMapped(skippingDamage: true) { (fileBlock, entry) throws(VMFSError) in
                let number = UInt64(entry & ~FormatConstants.unwrittenFlag)
                if seen.contains(number) { use.shared.insert(number) } else { seen.insert(number) }
                if number == target { use.users.append("\(reader.fileLabel) file block \(fileBlock)") }
            }
        }
        return use
    }
}
