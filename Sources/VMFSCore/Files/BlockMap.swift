/// A file's block map: the descriptor's direct pointers and its pointer-block tree.
///
/// Works on a descriptor held in memory by the caller (who stores it at the end of the
/// operation) and on pointer blocks through the metadata store, under the file's lock.
struct BlockMap {
    let store: MetadataStore
    let pointers: ClusterAllocator
    let layout: VolumeLayout
    let volumeID: UInt64
    var descriptor: FileDescriptorRecord

    var lockIndex: Int { FormatConstants.descriptorLockIndex(slot: descriptor.slot) }
    private static let fanout = FormatConstants.pointerEntries

    // MARK: Nodes

    func node(_ number: UInt32, level: Int) throws(VMFSError) -> PointerNode {
        guard number > 0, number < layout.pointerNodeCount else {
            throw VMFSError(.corrupt, "file descriptor \(descriptor.slot) points at pointer block \(number), outside the volume",
                            location: .init(structure: "file descriptor \(descriptor.slot)", offset: layout.descriptor(descriptor.slot)))
        }
        let address = layout.pointerNode(number)
        let node = try store.pointerNode(address, number: number, lockIndex: lockIndex)
        guard node.level == level, node.ownerSlot == descriptor.slot, node.ownerGeneration == descriptor.generation else {
            throw VMFSError(.corrupt, "pointer block \(number) belongs to slot \(node.ownerSlot) generation \(node.ownerGeneration) "
                            + "level \(node.level), not to file \(descriptor.slot) generation \(descriptor.generation) level \(level)",
                            location: .init(structure: "pointer block \(number)", offset: address))
        }
        return node
    }

    private func store(_ node: PointerNode) throws(VMFSError) {
        let address = layout.pointerNode(node.number)
        try store.put(address, lockIndex: lockIndex) { version in
            var copy = node
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }

    private mutating func newNode(level: Int) throws(VMFSError) -> PointerNode {
        let number = UInt32(try pointers.allocate())
        let node = PointerNode(number: number, level: level, ownerSlot: descriptor.slot, ownerGeneration: descriptor.generation)
        let address = layout.pointerNode(number)
        try store.initialize(address, lockIndex: lockIndex) { version in
            var copy = node
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
        descriptor.pointerBlocks = descriptor.pointerBlocks.saturatingAdd(1)
        return node
    }

    private mutating func release(_ node: PointerNode) throws(VMFSError) {
        try pointers.free(UInt64(node.number))
        descriptor.pointerBlocks = descriptor.pointerBlocks.saturatingSubtract(1)
    }

    // MARK: Lookup

    /// The map entry of file block `block` (0 = hole).
    func entry(at block: UInt64) throws(VMFSError) -> UInt32 {
        guard let path = BlockMapGeometry.path(forBlock: block) else { return 0 }
        switch path {
        case .direct(let i):
            return descriptor.direct[i]
        case .indirect(let depth, let indices):
            var number = descriptor.indirect[depth - 1]
            for (position, index) in indices.enumerated() {
                if number == 0 { return 0 }
                let level = depth - 1 - position
                let n = try node(number, level: level)
                if level == 0 { return n.entries[index] }
                number = n.entries[index]
            }
            return 0
        }
    }

    /// Pointer blocks a write to file block `block` would need to allocate.
    func missingNodes(for block: UInt64) throws(VMFSError) -> Int {
        guard let path = BlockMapGeometry.path(forBlock: block) else { return 0 }
        guard case .indirect(let depth, let indices) = path else { return 0 }
        var number = descriptor.indirect[depth - 1]
        for (position, index) in indices.enumerated() {
            if number == 0 { return depth - position }
            let level = depth - 1 - position
            if level == 0 { return 0 }
            number = try node(number, level: level).entries[index]
        }
        return 0
    }

    /// The first mapped block in `[from, limit)` and its entry, skipping empty subtrees.
    func nextMapped(from: UInt64, limit: UInt64) throws(VMFSError) -> (block: UInt64, entry: UInt32)? {
        var block = from
        let direct = BlockMapGeometry.direct
        while block < min(direct, limit) {
            if descriptor.direct[Int(block)] != 0 { return (block, descriptor.direct[Int(block)]) }
            block += 1
        }
        for depth in 1...3 {
            let first = BlockMapGeometry.firstBlock(ofDepth: depth)
            let span = BlockMapGeometry.span(ofLevel: depth)
            if block >= first + span { continue }
            if first >= limit { return nil }
            let root = descriptor.indirect[depth - 1]
            if root != 0, let found = try scan(root, level: depth - 1, base: first, from: max(block, first), limit: limit) {
                return found
            }
            block = first + span
        }
        return nil
    }

    private func scan(_ number: UInt32, level: Int, base: UInt64, from: UInt64, limit: UInt64) throws(VMFSError) -> (block: UInt64, entry: UInt32)? {
        let n = try node(number, level: level)
        let span = BlockMapGeometry.span(ofLevel: level)
        var index = Int((from - base) / span)
        while index < Self.fanout {
            let childBase = base + UInt64(index) * span
            if childBase >= limit { return nil }
            let e = n.entries[index]
            if e != 0 {
                if level == 0 { return (childBase, e) }
                if let found = try scan(e, level: level - 1, base: childBase, from: max(from, childBase), limit: limit) {
                    return found
                }
            }
            index += 1
        }
        return nil
    }

    /// The pointer blocks on the path to file block `block` (top first).
    func pathNodes(for block: UInt64) throws(VMFSError) -> [UInt32] {
        guard let path = BlockMapGeometry.path(forBlock: block), case .indirect(let depth, let indices) = path else { return [] }
        var result: [UInt32] = []
        var number = descriptor.indirect[depth - 1]
        for (position, index) in indices.enumerated() {
            if number == 0 { break }
            result.append(number)
            let level = depth - 1 - position
            if level == 0 { break }
            number = try node(number, level: level).entries[index]
        }
        return result
    }

    // MARK: Changes

    /// Sets file block `block` to `value`, creating pointer blocks on the way (they must have
    /// been reserved with the pointer allocator).
    mutating func setEntry(_ value: UInt32, at block: UInt64) throws(VMFSError) {
        guard let path = BlockMapGeometry.path(forBlock: block) else {
            throw VMFSError(.fileTooLarge, "file block \(block) is beyond the reach of the block map")
        }
        switch path {
        case .direct(let i):
            descriptor.direct[i] = value
        case .indirect(let depth, let indices):
            var current: PointerNode
            if descriptor.indirect[depth - 1] == 0 {
                current = try newNode(level: depth - 1)
                descriptor.indirect[depth - 1] = current.number
            } else {
                current = try node(descriptor.indirect[depth - 1], level: depth - 1)
            }
            for (position, index) in indices.enumerated() {
                let level = depth - 1 - position
                if level == 0 {
                    current.entries[index] = value
                    try store(current)
                    break
                }
                var child: PointerNode
                if current.entries[index] == 0 {
                    child = try newNode(level: level - 1)
                    current.entries[index] = child.number
                    try store(current)
                } else {
                    child = try node(current.entries[index], level: level - 1)
                }
                current = child
            }
        }
        if value != 0 { descriptor.mappedEnd = max(descriptor.mappedEnd, block + 1) }
    }

    /// Clears file block `block` and returns its old entry; frees pointer blocks left empty.
    mutating func clearEntry(at block: UInt64) throws(VMFSError) -> UInt32 {
        guard let path = BlockMapGeometry.path(forBlock: block) else { return 0 }
        switch path {
        case .direct(let i):
            let old = descriptor.direct[i]
            descriptor.direct[i] = 0
            return old
        case .indirect(let depth, let indices):
            guard descriptor.indirect[depth - 1] != 0 else { return 0 }
            var chain: [PointerNode] = []
            var number = descriptor.indirect[depth - 1]
            for (position, index) in indices.enumerated() {
                let level = depth - 1 - position
                let n = try node(number, level: level)
                chain.append(n)
                if level > 0 {
                    number = n.entries[index]
                    if number == 0 { return 0 }
                }
            }
            let old = chain[chain.count - 1].entries[indices[indices.count - 1]]
            if old == 0 { return 0 }
            // Clear bottom-up; drop nodes that became empty.
            var position = chain.count - 1
            chain[position].entries[indices[position]] = 0
            while position >= 0 {
                if chain[position].entries.allSatisfy({ $0 == 0 }) {
                    try release(chain[position])
                    if position == 0 {
                        descriptor.indirect[depth - 1] = 0
                        break
                    }
                    position -= 1
                    chain[position].entries[indices[position]] = 0
                } else {
                    try store(chain[position])
                    break
                }
            }
            return old
        }
    }
}
