/// fsck: block maps against the allocation bitmaps.
extension VolumeChecker {
    // MARK: Block maps and bitmaps

    func checkMaps() throws(VMFSError) {
        var usedBlocks = Bitset(count: layout.totalBlocks)
        var usedNodes = Bitset(count: UInt64(layout.pointerNodeCount))
        usedBlocks.insert(0)
        usedNodes.insert(0)
        for slot in 0..<FormatConstants.maxFiles {
            try checkInterruption()
            progress?("block maps", 0.4 + 0.4 * Double(slot) / Double(FormatConstants.maxFiles))
            guard var descriptor = descriptors[slot], descriptor.inUse else { continue }
            if descriptor.isInline {
                try checkInlineCounts(slot)
                continue
            }
            var changed = false
            var dataCount: UInt64 = 0
            var nodeCount: UInt64 = 0
            var highest: UInt64 = 0
            var writtenBeyondEnd = 0
            let structure = "file descriptor \(slot)"
            let address = layout.descriptor(slot)
            let blocksInSize = descriptor.size.pieces(of: UInt64(layout.blockSize))

            // Returns false when the entry must be cleared.
            func visitData(_ entry: UInt32, fileBlock: UInt64) throws(VMFSError) -> Bool {
                let number = UInt64(entry & ~FormatConstants.unwrittenFlag)
                if number == 0 || number >= layout.totalBlocks {
                    try problem(structure, offset: address, "file block \(fileBlock) points at data block \(number), outside the volume") {}
                    return false
                }
                if usedBlocks.contains(number) {
                    try problem(structure, offset: address, "file block \(fileBlock) uses data block \(number), which another file block already uses") {}
                    return false
                }
                usedBlocks.insert(number)
                dataCount += 1
                highest = max(highest, fileBlock + 1)
                if fileBlock >= blocksInSize && entry & FormatConstants.unwrittenFlag == 0 { writtenBeyondEnd += 1 }
                return true
            }

            func visitNode(_ number: UInt32, level: Int, base: UInt64) throws(VMFSError) -> PointerNode? {
                let nodeStructure = "pointer block \(number) of file slot \(slot)"
                guard number > 0, number < layout.pointerNodeCount else {
                    try problem(structure, offset: address, "points at pointer block \(number), outside the volume") {}
                    return nil
                }
                if usedNodes.contains(UInt64(number)) {
                    try problem(structure, offset: address, "pointer block \(number) is referenced twice") {}
                    return nil
                }
                let nodeAddress = layout.pointerNode(number)
                guard var node = try mirrored(nodeAddress, structure: nodeStructure, decode: { (bytes) throws(VMFSError) -> PointerNode in
                    try PointerNode.decode(bytes, number: number, volumeID: volumeID, address: nodeAddress)
                }) else {
                    report.problems[report.problems.count - 1].repaired = options.repair
                    report.problems[report.problems.count - 1].message += "; the blocks it mapped become a hole"
                    return nil
                }
                guard node.level == level, node.ownerSlot == slot, node.ownerGeneration == descriptor.generation else {
                    try problem(nodeStructure, offset: nodeAddress, "belongs to slot \(node.ownerSlot) generation \(node.ownerGeneration) level \(node.level), "
                                + "not to this file (generation \(descriptor.generation)) at level \(level)") {}
                    return nil
                }
                usedNodes.insert(UInt64(number))
                nodeCount += 1
                var nodeChanged = false
                let span = BlockMapGeometry.span(ofLevel: level)
                for index in 0..<FormatConstants.pointerEntries where node.entries[index] != 0 {
                    let childBase = base + UInt64(index) * span
                    if level == 0 {
                        if try !visitData(node.entries[index], fileBlock: childBase) { node.entries[index] = 0; nodeChanged = true }
                    } else if try visitNode(node.entries[index], level: level - 1, base: childBase) == nil {
                        node.entries[index] = 0
                        nodeChanged = true
                    }
                }
                if nodeChanged && options.repair {
                    let fixed = node
                    try writeRepaired(nodeAddress) { version in
                        var copy = fixed
                        copy.version = version
                        return copy.encoded(volumeID: volumeID, address: nodeAddress)
                    }
                }
                return node
            }

            for index in 0..<FormatConstants.directPointers where descriptor.direct[index] != 0 {
                if try !visitData(descriptor.direct[index], fileBlock: UInt64(index)) {
                    descriptor.direct[index] = 0
                    changed = true
                }
            }
            for depth in 1...3 where descriptor.indirect[depth - 1] != 0 {
                if try visitNode(descriptor.indirect[depth - 1], level: depth - 1, base: BlockMapGeometry.firstBlock(ofDepth: depth)) == nil {
                    descriptor.indirect[depth - 1] = 0
                    changed = true
                }
            }
            if descriptor.allocatedBlocks != dataCount || descriptor.pointerBlocks != nodeCount {
                try problem(structure, offset: address + 64, "counts \(descriptor.allocatedBlocks) data and \(descriptor.pointerBlocks) pointer blocks, "
                            + "but its map holds \(dataCount) and \(nodeCount)") {}
                descriptor.allocatedBlocks = dataCount
                descriptor.pointerBlocks = nodeCount
                changed = true
            }
            if descriptor.mappedEnd < highest || descriptor.mappedEnd > BlockMapGeometry.reachInBlocks {
                let what = descriptor.mappedEnd < highest ? "below its highest mapped block \(highest)" : "beyond the block map's reach"
                try problem(structure, offset: address + 112, "mapped end \(descriptor.mappedEnd) is \(what)") {}
                descriptor.mappedEnd = highest
                changed = true
            }
            if descriptor.size > layout.maxFileSize {
                // Keep every mapped block: the size ends where the last one does.
                let fitted = min(highest.saturatingMultiply(UInt64(layout.blockSize)), layout.maxFileSize)
                try problem(structure, offset: address + 56, "size \(descriptor.size) exceeds the maximum file size of "
                            + "\(layout.maxFileSize) bytes; set to \(fitted), the end of its last mapped block") {}
                descriptor.size = fitted
                changed = true
            }
            if writtenBeyondEnd > 0 {
                note("file slot \(slot): \(writtenBeyondEnd) written block(s) past the end of the file (an interrupted truncate; freed when the file grows)")
            }
            if changed && options.repair {
                descriptors[slot] = descriptor
                try rewriteDescriptor(slot)
            }
            report.usedBlocks += dataCount
            report.usedPointerBlocks += nodeCount
        }
        try checkBitmaps(pool: .blocks, used: usedBlocks)
        try checkBitmaps(pool: .pointers, used: usedNodes)
    }

    /// A file whose data lives in its descriptor uses no blocks: its counts must be zero.
    private func checkInlineCounts(_ slot: Int) throws(VMFSError) {
        guard let descriptor = descriptors[slot], descriptor.allocatedBlocks != 0 || descriptor.pointerBlocks != 0 else { return }
        try problem("file descriptor \(slot)", offset: layout.descriptor(slot) + 64,
                    "inline file counts \(descriptor.allocatedBlocks) data and \(descriptor.pointerBlocks) pointer blocks; it uses none") {
            () throws(VMFSError) in
            descriptors[slot]?.allocatedBlocks = 0
            descriptors[slot]?.pointerBlocks = 0
            try rewriteDescriptor(slot)
        }
    }

    func checkBitmaps(pool: ClusterBitmap.Pool, used: Bitset) throws(VMFSError) {
        let clusters = Int(pool == .blocks ? layout.blockClusterCount : layout.pointerClusterCount)
        let perCluster = UInt64(pool == .blocks ? layout.blocksPerCluster : layout.nodesPerCluster)
        let total = pool == .blocks ? layout.totalBlocks : UInt64(layout.pointerNodeCount)
        let noun = pool == .blocks ? "block" : "pointer-block"
        for c in 0..<clusters {
            try checkInterruption()
            progress?("\(noun) bitmaps", 0.8 + 0.2 * Double(c) / Double(max(clusters, 1)) * (pool == .blocks ? 0.5 : 1))
            let first = UInt64(c) * perCluster
            let count = Int(min(perCluster, total - min(first, total)))
            let address = pool == .blocks ? layout.blockBitmap(c) : layout.pointerBitmap(c)
            var expected = ClusterBitmap(pool: pool, index: c, firstItem: first, itemCount: count)
            for i in 0..<count where used.contains(first + UInt64(i)) { expected.set(i, allocated: true) }
            let structure = "\(noun) cluster \(c) bitmap"
            let raw = try read(address)
            let onDisk: ClusterBitmap
            do {
                onDisk = try ClusterBitmap.decode(raw, pool: pool, index: c, firstItem: first, itemCount: count,
                                                  volumeID: volumeID, address: address)
            } catch {
                try problem(structure, offset: address, "\(error.message); rebuilt from the block maps") { () throws(VMFSError) in
                    try writeBitmap(expected, at: address)
                }
                continue
            }
            guard onDisk.bits != expected.bits else { continue }
            var leaked = 0
            var missing = 0
            var examples: [UInt64] = []
            for i in 0..<count {
                let disk = onDisk.isAllocated(i)
                let want = expected.isAllocated(i)
                if disk && !want { leaked += 1 }
                if !disk && want { missing += 1 }
                if disk != want && examples.count < 4 { examples.append(first + UInt64(i)) }
            }
            var parts: [String] = []
            if leaked > 0 { parts.append("\(leaked) \(noun)(s) marked allocated but used by no file (leaked)") }
            if missing > 0 { parts.append("\(missing) \(noun)(s) used by files but marked free") }
            try problem(structure, offset: address, parts.joined(separator: "; ") + " (e.g. \(examples.map(String.init).joined(separator: ", ")))") {
                () throws(VMFSError) in try writeBitmap(expected, at: address)
            }
        }
    }

    func writeBitmap(_ bitmap: ClusterBitmap, at address: UInt64) throws(VMFSError) {
        try writeRepaired(address) { version in
            var copy = bitmap
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }
}
