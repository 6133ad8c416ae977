/// Changing how much space a file uses: truncate, hole punching, preallocation, and the
/// freeing of blocks in bounded operations.
extension Session {
    private func blocksCovering(_ size: UInt64) -> UInt64 { size.pieces(of: blockSize) }

    /// Frees mapped blocks in file blocks `[from, to)` (only written ones with `onlyWritten`),
    /// in operations small enough for one journal transaction each. The metadata lock is held.
    func freeRange(_ file: OpenFile, from: UInt64, to: UInt64, onlyWritten: Bool) throws(VMFSError) {
        var cursor = from
        while cursor < to {
            // Collect a batch of mapped blocks and the pointer blocks on their paths.
            var batch: [(block: UInt64, entry: UInt32)] = []
            var scan = cursor
            let map = map(of: file)
            while batch.count < 512, let (block, entry) = try map.nextMapped(from: scan, limit: to) {
                scan = block + 1
                if onlyWritten && entry & FormatConstants.unwrittenFlag != 0 { continue }
                batch.append((block, entry))
            }
            if batch.isEmpty { break }
            let dataBlocks = batch.map { UInt64($0.entry & ~FormatConstants.unwrittenFlag) }
            var nodes: Set<UInt64> = []
            for (block, _) in batch { for node in try map.pathNodes(for: block) { nodes.insert(UInt64(node)) } }
            try blocks.withClustersHeld(of: dataBlocks, deadline: allocationDeadline) { () throws(VMFSError) in
            try pointers.withClustersHeld(of: Array(nodes), deadline: allocationDeadline) { () throws(VMFSError) in
            try checkFreeable(batch, of: map.reader)
            var index = 0
            while index < batch.count {
                let before = store.dirtyCount
                try store.operation { () throws(VMFSError) in
                    var map = self.map(of: file)
                    let device = self.device
                    let layout = self.layout
                    let size = self.blockSize
                    while index < batch.count && store.dirtyCount - before < MetadataStore.operationBudget - 10 {
                        let (block, _) = batch[index]
                        let old = try map.clearEntry(at: block)
                        let number = UInt64(old & ~FormatConstants.unwrittenFlag)
                        if old != 0 {
                            // Registered before the free, whose own after-commit action makes the
                            // block reusable: the discard must run first, or it could wipe the
                            // data of a file that was given the block in between.
                            if old & FormatConstants.unwrittenFlag == 0 {
                                store.afterCommit { try? device.discard(offset: layout.block(number), length: size) }
                            }
                            try blocks.free(number)
                            map.descriptor.allocatedBlocks = map.descriptor.allocatedBlocks.saturatingSubtract(1)
                        }
                        index += 1
                    }
                    map.descriptor.changeTime = Clock.wallNanoseconds
                    try storeDescriptor(map.descriptor)
                    file.state.withLock { $0.descriptor = map.descriptor }
                }
            }
            }
            }
            cursor = scan
        }
    }

    /// Checks that every block of `batch` (entries in range, from `reader`) is one the bitmap
    /// marks allocated and that the batch names it once: freeing a block the file does not own
    /// would hand it out again while another file still uses it.
    private func checkFreeable(_ batch: [(block: UInt64, entry: UInt32)], of reader: BlockMapReader) throws(VMFSError) {
        var seen: Set<UInt64> = []
        for (block, entry) in batch {
            let number = UInt64(entry & ~FormatConstants.unwrittenFlag)
            guard seen.insert(number).inserted else {
                throw reader.corrupt("file block \(block) maps data block \(number), which an earlier block of the file maps too")
            }
            guard try blocks.isAllocated(number) else {
                throw reader.corrupt("file block \(block) maps data block \(number), which the allocation bitmap marks free")
            }
        }
    }

    /// Frees written blocks past the end of the file, left by a truncate a crash interrupted,
    /// so that growing the file never exposes old data. The metadata lock is held.
    func trimBeyondEnd(_ file: OpenFile) throws(VMFSError) {
        let descriptor = file.descriptor
        guard !descriptor.isInline else { return }
        let first = blocksCovering(descriptor.size)
        guard descriptor.mappedEnd > first else { return }
        try freeRange(file, from: first, to: descriptor.mappedEnd, onlyWritten: true)
    }

    /// Writes zeros over `[start, end)` of file data that lies in written blocks.
    private func zeroData(_ file: OpenFile, from start: UInt64, to end: UInt64) throws(VMFSError) {
        var position = start
        let map = map(of: file)
        while position < end {
            let block = position / blockSize
            let within = position % blockSize
            let length = min(blockSize - within, end - position)
            if let number = try dataBlock(try map.entry(at: block), of: file, fileBlock: block) {
                let zeros = AlignedBuffer(count: Int(length), alignment: max(device.alignment, 4096))
                try zeros.withBytes { bytes throws(VMFSError) in try device.write(UnsafeRawBufferPointer(bytes), at: layout.block(number) + within) }
            }
            position += length
        }
    }

    /// Sets the file size. Shrinking zeroes the tail of the new last block and frees the blocks
    /// past it; growing leaves a hole.
    func truncate(_ file: OpenFile, to newSize: UInt64) throws(VMFSError) {
        try checkWritable()
        try file.checkUsable()
        guard newSize <= layout.maxFileSize else {
            throw VMFSError(.fileTooLarge, "size \(newSize) exceeds the maximum file size of \(layout.maxFileSize) bytes")
        }
        try file.withExclusiveData { () throws(VMFSError) in
            try file.withMetadataLock { () throws(VMFSError) in
                let old = file.descriptor
                if old.isInline && newSize > UInt64(FormatConstants.inlineCapacity) { try convertInline(file) }
                let descriptor = file.descriptor
                if descriptor.isInline {
                    try store.operation { () throws(VMFSError) in
                        var changed = descriptor
                        var data = changed.inlineData
                        if data.count > Int(newSize) { data.removeLast(data.count - Int(newSize)) }
                        else { data += [UInt8](repeating: 0, count: Int(newSize) - data.count) }
                        changed.inlineData = data
                        changed.size = newSize
                        changed.modificationTime = Clock.wallNanoseconds
                        changed.changeTime = changed.modificationTime
                        try storeDescriptor(changed)
                        file.state.withLock { $0.descriptor = changed }
                    }
                    return
                }
                if newSize > descriptor.size {
                    try trimBeyondEnd(file)
                } else if newSize < descriptor.size && newSize % blockSize != 0 {
                    // Bytes past the new end must read as zeros if the file grows again.
                    try zeroData(file, from: newSize, to: (newSize / blockSize + 1) * blockSize)
                }
                try setSize(file, newSize)
                if newSize < descriptor.size || descriptor.mappedEnd > blocksCovering(newSize) {
                    try freeRange(file, from: blocksCovering(newSize), to: max(descriptor.mappedEnd, blocksCovering(descriptor.size)),
                                  onlyWritten: false)
                    try store.operation { () throws(VMFSError) in
                        var changed = file.descriptor
                        changed.mappedEnd = min(changed.mappedEnd, blocksCovering(newSize))
                        try storeDescriptor(changed)
                        file.state.withLock { $0.descriptor = changed }
                    }
                }
            }
        }
    }

    private func setSize(_ file: OpenFile, _ size: UInt64) throws(VMFSError) {
        try store.operation { () throws(VMFSError) in
            var changed = file.descriptor
            changed.size = size
            changed.modificationTime = Clock.wallNanoseconds
            changed.changeTime = changed.modificationTime
            try storeDescriptor(changed)
            file.state.withLock { $0.descriptor = changed }
        }
    }

    /// Deallocates `[offset, offset + length)`: whole blocks are freed, partial blocks zeroed.
    /// The size does not change (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`).
    func punchHole(_ file: OpenFile, offset: UInt64, length: UInt64) throws(VMFSError) {
        try checkWritable()
        try file.checkUsable()
        guard length > 0 else { return }
        // Punching past the maximum size frees nothing more: clamp instead of failing.
        let end = min(offset.saturatingAdd(length), layout.maxFileSize)
        guard offset < end else { return }
        try file.withExclusiveData { () throws(VMFSError) in
            try file.withMetadataLock { () throws(VMFSError) in
                let descriptor = file.descriptor
                if descriptor.isInline {
                    let stop = min(end, descriptor.size)
                    guard offset < stop else { return }
                    try store.operation { () throws(VMFSError) in
                        var changed = descriptor
                        for i in Int(offset)..<Int(stop) where i < changed.inlineData.count { changed.inlineData[i] = 0 }
                        changed.modificationTime = Clock.wallNanoseconds
                        changed.changeTime = changed.modificationTime
                        try storeDescriptor(changed)
                        file.state.withLock { $0.descriptor = changed }
                    }
                    return
                }
                let firstFull = blocksCovering(offset)
                let lastFull = end / blockSize
                if firstFull >= lastFull {
                    try zeroData(file, from: offset, to: end)
                } else {
                    if offset < firstFull * blockSize { try zeroData(file, from: offset, to: firstFull * blockSize) }
                    if end > lastFull * blockSize { try zeroData(file, from: lastFull * blockSize, to: end) }
                    try freeRange(file, from: firstFull, to: lastFull, onlyWritten: false)
                }
                try store.operation { () throws(VMFSError) in
                    var changed = file.descriptor
                    changed.modificationTime = Clock.wallNanoseconds
                    changed.changeTime = changed.modificationTime
                    try storeDescriptor(changed)
                    file.state.withLock { $0.descriptor = changed }
                }
            }
        }
    }

    /// Preallocates `[offset, offset + length)`. Blocks are allocated unwritten (reading as
    /// zeros, "lazy zeroed thick"), or zeroed on the device and marked written (`eagerZero`,
    /// which multi-writer files need). Without `keepSize` the file grows to cover the range.
    func allocate(_ file: OpenFile, offset: UInt64, length: UInt64, keepSize: Bool, eagerZero: Bool) throws(VMFSError) {
        try checkWritable()
        try file.checkUsable()
        guard length > 0 else { return }
        let end = try rangeEnd(offset: offset, length: length, limit: layout.maxFileSize)
        try file.withSharedData { () throws(VMFSError) in
            try file.withMetadataLock { () throws(VMFSError) in
                if end > file.descriptor.size { try trimBeyondEnd(file) }
                if file.descriptor.isInline && end > UInt64(FormatConstants.inlineCapacity) { try convertInline(file) }
                if !file.descriptor.isInline {
                    var block = offset / blockSize
                    let last = blocksCovering(end)
                    while block < last {
                        // Find up to 32 holes and fill them in one operation.
                        var holes: [UInt64] = []
                        var nodes = 0
                        let map = map(of: file)
                        var scan = block
                        while scan < last && holes.count < 32 {
                            let entry = try map.entry(at: scan)
                            if entry == 0 {
                                holes.append(scan)
                                nodes += try map.missingNodes(for: scan)
                            } else if eagerZero && entry & FormatConstants.unwrittenFlag != 0 {
                                try fill(file, block: scan, entry: entry, with: nil, at: 0)
                            }
                            scan += 1
                        }
                        block = scan
                        if holes.isEmpty { continue }
                        try blocks.reserve(holes.count, deadline: allocationDeadline)
                        do throws(VMFSError) {
                            try pointers.reserve(nodes, deadline: allocationDeadline)
                        } catch {
                            blocks.unreserve(holes.count)
                            throw error
                        }
                        let pointerBlocksBefore = file.descriptor.pointerBlocks
                        var allocated = 0
                        do throws(VMFSError) {
                            var index = 0
                            while index < holes.count {
                                let before = store.dirtyCount
                                var failure: VMFSError?
                                try store.operation { () throws(VMFSError) in
                                    var map = self.map(of: file)
                                    while index < holes.count && store.dirtyCount - before < MetadataStore.operationBudget - 10 {
                                        do throws(VMFSError) {
                                            try preallocate(holes[index], of: file, in: &map, eagerZero: eagerZero, allocated: &allocated)
                                        } catch {
                                            failure = error  // keep what was mapped so far: stored below
                                            break
                                        }
                                        index += 1
                                    }
                                    try storeDescriptor(map.descriptor)
                                    file.state.withLock { $0.descriptor = map.descriptor }
                                }
                                if let failure { throw failure }
                            }
                        } catch {
                            blocks.unreserve(holes.count - allocated)
                            pointers.unreserve(max(0, nodes - Int(file.descriptor.pointerBlocks.saturatingSubtract(pointerBlocksBefore))))
                            throw error
                        }
                        // Holes under one missing pointer block each counted it: give back the
                        // reservations no allocation used (they would leak until unmount).
                        let usedNodes = Int(file.descriptor.pointerBlocks.saturatingSubtract(pointerBlocksBefore))
                        pointers.unreserve(max(0, nodes - usedNodes))
                    }
                }
                if !keepSize && end > file.descriptor.size { try setSize(file, end) }
            }
        }
    }

    /// Maps one hole of a preallocation to a new block: unwritten, or zeroed and written with
    /// `eagerZero`. A block that could not be zeroed or mapped goes back at once.
    private func preallocate(_ hole: UInt64, of file: OpenFile, in map: inout BlockMap, eagerZero: Bool,
                             allocated: inout Int) throws(VMFSError) {
        let number = try blocks.allocate()
        allocated += 1
        noteOwned(file, number: number)
        do throws(VMFSError) {
            if eagerZero { try device.zero(offset: layout.block(number), length: blockSize) }
            let entry = eagerZero ? UInt32(number) : UInt32(number) | FormatConstants.unwrittenFlag
            try map.setEntry(entry, at: hole)
        } catch {
            try? blocks.free(number)  // mapped nowhere
            throw error
        }
        map.descriptor.allocatedBlocks = map.descriptor.allocatedBlocks.saturatingAdd(1)
    }

    /// Changes mode, owner, times and size of `file` (open here with the exclusive lock).
    func setAttributes(_ file: OpenFile, _ changes: AttributeChanges) throws(VMFSError) {
        try checkWritable()
        if let size = changes.size, size != file.descriptor.size { try truncate(file, to: size) }
        guard changes.mode != nil || changes.uid != nil || changes.gid != nil || changes.accessTime != nil
            || changes.modificationTime != nil || changes.size != nil else { return }
        try file.withMetadataLock { () throws(VMFSError) in
            try store.operation { () throws(VMFSError) in
                var changed = file.descriptor
                if let mode = changes.mode { changed.mode = (changed.mode & ~0o7777) | (mode & 0o7777) }
                if let uid = changes.uid { changed.uid = uid }
                if let gid = changes.gid { changed.gid = gid }
                if let time = changes.accessTime { changed.accessTime = time }
                if let time = changes.modificationTime { changed.modificationTime = time }
                changed.changeTime = Clock.wallNanoseconds
                try storeDescriptor(changed)
                file.state.withLock { $0.descriptor = changed }
            }
        }
    }

    /// Makes every change of this host durable: commits the journal and flushes the device.
    func sync() throws(VMFSError) {
        if options.readOnly { return }
        try store.commit()
        try device.flush()
    }

    /// Free and total space, from the allocation bitmaps (read without locks).
    func spaceStatistics() throws(VMFSError) -> VolumeStatistics {
        try SpaceAccounting.statistics(device: rawDevice, layout: layout, files: try namespace.entries().count)
    }
}
