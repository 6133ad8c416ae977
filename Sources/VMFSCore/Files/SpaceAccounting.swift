/// Free-space totals read from the allocation bitmaps without taking locks (`statfs`, `vmfs info`).
///
/// A stored free count is trusted only within its cluster: a damaged bitmap whose count exceeds
/// the cluster's items (or that is not a bitmap at all) is counted as having none free and is
/// reported, so that free space can never exceed the volume or make "used" negative.
enum SpaceAccounting {
    /// Free items of `pool` (the sum of every cluster's free count; a pristine cluster counts as
    /// entirely free but for the reserved item 0 of cluster 0) and the clusters whose bitmap
    /// could not be believed.
    static func freeItems(_ pool: ClusterBitmap.Pool, device: any BlockDevice,
                          layout: VolumeLayout) throws(VMFSError) -> (free: UInt64, damaged: [Int]) {
        let count = Int(pool == .blocks ? layout.blockClusterCount : layout.pointerClusterCount)
        let base = pool == .blocks ? layout.blockBitmapOffset : layout.pointerBitmapOffset
        let perCluster = UInt64(pool == .blocks ? layout.blocksPerCluster : layout.nodesPerCluster)
        let total = pool == .blocks ? layout.totalBlocks : UInt64(layout.pointerNodeCount)
        let size = FormatConstants.sectorSize
        let region = try device.read(count: count * size, at: base)
        var sum: UInt64 = 0
        var damaged: [Int] = []
        for c in 0..<count {
            let reader = ByteReader(Array(region[(c * size)..<((c + 1) * size)]))
            let first = UInt64(c) * perCluster
            let usable = min(perCluster, total - min(first, total)) - (c == 0 ? 1 : 0)
            if reader.isAllZero {
                sum += usable
            } else if reader.u32(0) == SectorMagic.bitmap.rawValue, UInt64(reader.u32(40)) <= usable {
                sum += UInt64(reader.u32(40))
            } else {
                damaged.append(c)
            }
        }
        return (sum, damaged)
    }

    /// Space and file counts for `statfs`.
    static func statistics(device: any BlockDevice, layout: VolumeLayout, files: Int) throws(VMFSError) -> VolumeStatistics {
        let blocks = try freeItems(.blocks, device: device, layout: layout)
        let pointers = try freeItems(.pointers, device: device, layout: layout)
        return VolumeStatistics(blockSize: layout.blockSize, totalBlocks: layout.totalBlocks, freeBlocks: blocks.free,
                                maxFiles: FormatConstants.maxFiles, files: files, freePointerBlocks: pointers.free,
                                damagedBitmaps: blocks.damaged.map { "block cluster \($0) bitmap" }
                                    + pointers.damaged.map { "pointer-block cluster \($0) bitmap" })
    }
}
