/// Reading and writing file data. Data goes straight between the caller and the device; only
/// writes into holes or unwritten blocks change metadata (allocation, block map, size).
extension Session {
    /// The data block of a written entry (in range, checked by ``BlockMapReader``; in use,
    /// checked here), or `nil` for a hole or an unwritten (reads-as-zero) block.
    func dataBlock(_ entry: UInt32, of file: OpenFile, fileBlock: UInt64) throws(VMFSError) -> UInt64? {
        guard entry != 0, entry & FormatConstants.unwrittenFlag == 0 else { return nil }
        try checkOwned(file, number: UInt64(entry), fileBlock: fileBlock)
        return UInt64(entry)
    }

    func map(of file: OpenFile) -> BlockMap {
        let (descriptor, name) = file.state.withLock { ($0.descriptor, $0.name) }
        return BlockMap(store: store, pointers: pointers, layout: layout, volumeID: volumeID, fileName: name, descriptor: descriptor)
    }

    /// One contiguous device transfer of a read or write.
    private struct Segment {
        var device: UInt64
        var buffer: Range<Int>
    }

    /// Plans the device segments of `[offset, offset + count)`, coalescing contiguous blocks.
    /// Returns nil segments for holes (when `allowHoles`) or throws when a block is not written.
    private func plan(_ file: OpenFile, offset: UInt64, count: Int,
                      holes: (Range<Int>) -> Void) throws(VMFSError) -> [Segment]? {
        let map = map(of: file)
        var segments: [Segment] = []
        var done = 0
        while done < count {
            let position = offset + UInt64(done)
            let block = position / blockSize
            let within = position % blockSize
            let length = Int(min(blockSize - within, UInt64(count - done)))
            let entry = try map.entry(at: block)
            if let number = try dataBlock(entry, of: file, fileBlock: block) {
                let deviceOffset = layout.block(number) + within
                if let last = segments.last, last.device + UInt64(last.buffer.count) == deviceOffset, last.buffer.upperBound == done {
                    segments[segments.count - 1].buffer = last.buffer.lowerBound..<(done + length)
                } else {
                    segments.append(Segment(device: deviceOffset, buffer: done..<(done + length)))
                }
            } else {
                holes(done..<(done + length))
            }
            done += length
        }
        return segments
    }

    private func transfer(_ segments: [Segment], buffer: UnsafeMutableRawBufferPointer, write: Bool) throws(VMFSError) {
        let target: any BlockDevice = write ? device : rawDevice
        if segments.count == 1 {
            let s = segments[0]
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[s.buffer])
            if write { try target.write(UnsafeRawBufferPointer(slice), at: s.device) } else { try target.read(into: slice, at: s.device) }
            return
        }
        try target.perform(segments.map {
            DeviceRequest(kind: write ? .write : .read, offset: $0.device, buffer: UnsafeMutableRawBufferPointer(rebasing: buffer[$0.buffer]))
        })
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns how many (0 at or past the end).
    func read(_ file: OpenFile, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) -> Int {
        try file.checkUsable()
        return try file.withSharedData { () throws(VMFSError) -> Int in
            let descriptor = file.descriptor
            guard offset < descriptor.size, buffer.count > 0 else { return 0 }
            let count = Int(min(UInt64(buffer.count), descriptor.size - offset))
            if descriptor.isInline {
                let start = Int(offset)
                let available = max(0, min(descriptor.inlineData.count - start, count))
                if available > 0 {
                    descriptor.inlineData.withUnsafeBytes { source in
                        UnsafeMutableRawBufferPointer(rebasing: buffer[0..<available])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + available)]))
                    }
                }
                if available < count {
                    UnsafeMutableRawBufferPointer(rebasing: buffer[available..<count]).initializeMemory(as: UInt8.self, repeating: 0)
                }
                return count
            }
            let segments = try plan(file, offset: offset, count: count) { hole in
                UnsafeMutableRawBufferPointer(rebasing: buffer[hole]).initializeMemory(as: UInt8.self, repeating: 0)
            } ?? []
            try transfer(segments, buffer: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), write: false)
            return count
        }
    }

    /// Writes all of `buffer` at `offset`.
    func write(_ file: OpenFile, _ buffer: UnsafeRawBufferPointer, at offset: UInt64, multiWriter: Bool) throws(VMFSError) {
        try checkWritable()
        try file.checkUsable()
        guard buffer.count > 0 else { return }
        let end = try rangeEnd(offset: offset, length: UInt64(buffer.count), limit: layout.maxFileSize)
        let mutable = UnsafeMutableRawBufferPointer(mutating: buffer)
        try file.withSharedData { () throws(VMFSError) in
            // Fast path: every block already written and the size unchanged: data only.
            let descriptor = file.descriptor
            if !descriptor.isInline && end <= descriptor.size {
                var complete = true
                let segments = try plan(file, offset: offset, count: buffer.count) { _ in complete = false }
                if complete, let segments {
                    try transfer(segments, buffer: mutable, write: true)
                    touch(file)
                    return
                }
            }
            guard !multiWriter else {
                throw VMFSError(.permissionDenied, "a multi-writer handle may only write within the file's written blocks "
                                + "(preallocate the file with eager zeroing)")
            }
            try file.withMetadataLock { () throws(VMFSError) in
                try writeAllocating(file, mutable, at: offset)
            }
        }
    }

    /// Updates the modification time in memory, and on disk at most once a second.
    private func touch(_ file: OpenFile) {
        let now = Clock.wallNanoseconds
        let stale = file.state.withLock { s -> Bool in
            let old = s.descriptor.modificationTime
            s.descriptor.modificationTime = now
            s.descriptor.changeTime = now
            return old < now - 1_000_000_000 || old > now  // (a time from disk may be anything)
        }
        if stale {
            try? file.withMetadataLock { () throws(VMFSError) in
                try store.operation { () throws(VMFSError) in try storeDescriptor(file.descriptor) }
            }
        }
    }

    /// The slow write path (the file's metadata lock held): extends, converts inline data,
    /// allocates and zero-fills new blocks, and updates the size.
    private func writeAllocating(_ file: OpenFile, _ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        let end = offset + UInt64(buffer.count)
        if end > file.descriptor.size { try trimBeyondEnd(file) }
        if file.descriptor.isInline {
            if end <= UInt64(FormatConstants.inlineCapacity) {
                try store.operation { () throws(VMFSError) in
                    var descriptor = file.descriptor
                    let newSize = max(descriptor.size, end)
                    var data = descriptor.inlineData
                    if data.count < Int(newSize) { data += [UInt8](repeating: 0, count: Int(newSize) - data.count) }
                    data.withUnsafeMutableBytes {
                        UnsafeMutableRawBufferPointer(rebasing: $0[Int(offset)..<(Int(offset) + buffer.count)]).copyMemory(from: UnsafeRawBufferPointer(buffer))
                    }
                    descriptor.inlineData = data
                    descriptor.size = newSize
                    descriptor.modificationTime = Clock.wallNanoseconds
                    descriptor.changeTime = descriptor.modificationTime
                    try storeDescriptor(descriptor)
                    file.state.withLock { $0.descriptor = descriptor }
                }
                return
            }
            try convertInline(file)
        }
        var done = 0
        while done < buffer.count {
            let position = offset + UInt64(done)
            let block = position / blockSize
            let within = position % blockSize
            let length = Int(min(blockSize - within, UInt64(buffer.count - done)))
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + length)])
            let entry = try map(of: file).entry(at: block)
            if let number = try dataBlock(entry, of: file, fileBlock: block) {
                try device.write(UnsafeRawBufferPointer(piece), at: layout.block(number) + within)
            } else {
                try fill(file, block: block, entry: entry, with: piece, at: within)
            }
            done += length
        }
        try store.operation { () throws(VMFSError) in
            var descriptor = file.descriptor
            descriptor.size = max(descriptor.size, end)
            descriptor.modificationTime = Clock.wallNanoseconds
            descriptor.changeTime = descriptor.modificationTime
            try storeDescriptor(descriptor)
            file.state.withLock { $0.descriptor = descriptor }
        }
    }

    /// Makes file block `block` (a hole or unwritten) hold `piece` at `within`, zeros elsewhere:
    /// allocate (or take the unwritten block), write the data, then map it — one operation, so
    /// the data is on the device before the mapping can commit.
    func fill(_ file: OpenFile, block: UInt64, entry: UInt32, with piece: UnsafeMutableRawBufferPointer?, at within: UInt64) throws(VMFSError) {
        if entry != 0 {
            // A preallocated block: data goes into it for the first time (checked outside the
            // operation, which would hold up commits during a pass over the block maps).
            let checked = try map(of: file).reader.checked(entry, fileBlock: block)
            try verifyClaim(file, block: block, number: UInt64(checked & ~FormatConstants.unwrittenFlag))
        }
        let needsBlock = entry == 0 ? 1 : 0
        let nodes = try map(of: file).missingNodes(for: block)
        try blocks.reserve(needsBlock, deadline: allocationDeadline)
        do throws(VMFSError) {
            try pointers.reserve(nodes, deadline: allocationDeadline)
        } catch {
            blocks.unreserve(needsBlock)
            throw error
        }
        // What the operation took of the reservations (the rest goes back if it fails).
        var usedBlock = 0
        var usedNodes = 0
        do throws(VMFSError) {
            try store.operation { () throws(VMFSError) in
                var map = map(of: file)
                let nodesBefore = map.descriptor.pointerBlocks
                defer { usedNodes = Int(map.descriptor.pointerBlocks.saturatingSubtract(nodesBefore)) }
                let number = entry == 0 ? try blocks.allocate() : UInt64(entry & ~FormatConstants.unwrittenFlag)
                if entry == 0 {
                    usedBlock = 1
                    noteOwned(file, number: number)
                }
                let base = layout.block(number)
                do throws(VMFSError) {
                    if let piece, within == 0 && UInt64(piece.count) == blockSize {
                        try device.write(UnsafeRawBufferPointer(piece), at: base)
                    } else {
                        try device.zero(offset: base, length: blockSize)
                        if let piece { try device.write(UnsafeRawBufferPointer(piece), at: base + within) }
                    }
                    try map.setEntry(UInt32(number), at: block)
                } catch {
                    // The block is mapped nowhere: give it back, or it would leak. Pointer blocks
                    // the mapping already linked in stay, with the descriptor that reaches them.
                    if entry == 0 { try? blocks.free(number) }
                    if map.descriptor.pointerBlocks != nodesBefore {
                        try? storeDescriptor(map.descriptor)
                        file.state.withLock { $0.descriptor = map.descriptor }
                    }
                    throw error
                }
                if entry == 0 { map.descriptor.allocatedBlocks = map.descriptor.allocatedBlocks.saturatingAdd(1) }
                try storeDescriptor(map.descriptor)
                file.state.withLock { $0.descriptor = map.descriptor }
            }
        } catch {
            blocks.unreserve(needsBlock - usedBlock)
            pointers.unreserve(nodes - usedNodes)
            throw error
        }
    }

    /// Moves inline data into a data block (the file grew past the inline capacity).
    func convertInline(_ file: OpenFile) throws(VMFSError) {
        let descriptor = file.descriptor
        guard descriptor.isInline else { return }
        var converted = descriptor
        converted.isInline = false
        converted.inlineData = []
        converted.direct = Array(repeating: 0, count: FormatConstants.directPointers)
        if descriptor.size == 0 {
            try store.operation { () throws(VMFSError) in
                try storeDescriptor(converted)
                file.state.withLock { $0.descriptor = converted }
            }
            return
        }
        try blocks.reserve(1, deadline: allocationDeadline)
        var allocated = false
        do throws(VMFSError) {
            try convertInline(file, into: &converted, from: descriptor, allocated: &allocated)
        } catch {
            if !allocated { blocks.unreserve(1) }
            throw error
        }
    }

    /// The operation of ``convertInline(_:)``: one block with the inline data, mapped.
    private func convertInline(_ file: OpenFile, into converted: inout FileDescriptorRecord, from descriptor: FileDescriptorRecord,
                               allocated: inout Bool) throws(VMFSError) {
        try store.operation { () throws(VMFSError) in
            let number = try blocks.allocate()
            allocated = true
            noteOwned(file, number: number)
            let buffer = AlignedBuffer(count: Int(blockSize), alignment: max(device.alignment, 4096))
            descriptor.inlineData.withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
            do throws(VMFSError) {
                try buffer.withBytes { bytes throws(VMFSError) in try device.write(UnsafeRawBufferPointer(bytes), at: layout.block(number)) }
            } catch {
                try? blocks.free(number)
                throw error
            }
            converted.direct[0] = UInt32(number)
            converted.allocatedBlocks = 1
            converted.mappedEnd = 1
            try storeDescriptor(converted)
            file.state.withLock { $0.descriptor = converted }
        }
    }
}
