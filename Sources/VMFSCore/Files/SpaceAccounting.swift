/// Free-space totals read from the allocation bitmaps without taking locks (`statfs`, `vmfs info`).
enum SpaceAccounting {
    /// Free items of `pool`: the sum of every cluster's free count; a pristine cluster counts as
    /// entirely free (but for the reserved item 0 of cluster 0).
    static func freeItems(_ pool: ClusterBitmap.Pool, device: any BlockDevice, layout: VolumeLayout) throws(VMFSError) -> UInt64 {
        let count = Int(pool == .blocks ? layout.blockClusterCount : layout.pointerClusterCount)
        let base = pool == .blocks ? layout.blockBitmapOffset : layout.pointerBitmapOffset
        let perCluster = UInt64(pool == .blocks ? layout.blocksPerCluster : layout.nodesPerCluster)
        let total = pool == .blocks ? layout.totalBlocks : UInt64(layout.pointerNodeCount)
        let size = FormatConstants.sectorSize
        let region = try device.read(count: count * size, at: base)
        var sum: UInt64 = 0
        for c in 0..<count {
            let reader = ByteReader(Array(region[(c * size)..<((c + 1) * size)]))
            if reader.isAllZero {
                let first = UInt64(c) * perCluster
                sum += min(perCluster, total - min(first, total)) - (c == 0 ? 1 : 0)
            } else {
                sum += UInt64(reader.u32(40))
            }
        }
        return sum
    }

    /// Space and file counts for `statfs`.
    static func statistics(device: any BlockDevice, layout: VolumeLayout, files: Int) throws(VMFSError) -> VolumeStatistics {
        VolumeStatistics(blockSize: layout.blockSize, totalBlocks: layout.totalBlocks,
                         freeBlocks: try freeItems(.blocks, device: device, layout: layout),
                         maxFiles: FormatConstants.maxFiles, files: files,
                         freePointerBlocks: try freeItems(.pointers, device: device, layout: layout))
    }
}
