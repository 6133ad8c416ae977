/// A file's block map: the descriptor's direct pointers and its pointer-block tree.
///
/// Works on a descriptor held in memory by the caller (who stores it at the end of the
/// operation) and on pointer blocks through the metadata store, under the file's lock. Every
/// entry read from it is checked by ``BlockMapReader``.
struct BlockMap {
    let store: MetadataStore
    let pointers: ClusterAllocator
    let layout: VolumeLayout
    let volumeID: UInt64
    /// The file's name, for messages.
    let fileName: String
    var descriptor: FileDescriptorRecord

    var lockIndex: Int { FormatConstants.descriptorLockIndex(slot: descriptor.slot) }

    /// The map as it stands, for lookups; pointer blocks come through the store.
    var reader: BlockMapReader {
        let store = store
        let layout = layout
        let lockIndex = lockIndex
        return BlockMapReader(layout: layout, descriptor: descriptor, fileName: fileName) { (number) throws(VMFSError) in
            try store.pointerNode(layout.pointerNode(number), number: number, lockIndex: lockIndex)
        }
    }

    // MARK: Nodes

    func node(_ number: UInt32, level: Int, fileBlock: UInt64) throws(VMFSError) -> PointerNode {
        try reader.node(number, level: level, fileBlock: fileBlock)
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

    /// The checked map entry of file block `block` (0 = hole).
    func entry(at block: UInt64) throws(VMFSError) -> UInt32 { try reader.entry(at: block) }

    /// Pointer blocks a write to file block `block` would need to allocate.
    func missingNodes(for block: UInt64) throws(VMFSError) -> Int { try reader.missingNodes(for: block) }

    /// The first mapped block in `[from, limit)` and its checked entry, skipping empty subtrees.
    func nextMapped(from: UInt64, limit: UInt64) throws(VMFSError) -> (block: UInt64, entry: UInt32)? {
        try reader.nextMapped(from: from, limit: limit)
    }

    /// The pointer blocks on the path to file block `block` (top first).
    func pathNodes(for block: UInt64) throws(VMFSError) -> [UInt32] { try reader.pathNodes(for: block) }

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
                current = try node(descriptor.indirect[depth - 1], level: depth - 1, fileBlock: block)
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
                    child = try node(current.entries[index], level: level - 1, fileBlock: block)
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
            let old = try reader.checked(descriptor.direct[i], fileBlock: block)
            descriptor.direct[i] = 0
            return old
        case .indirect(let depth, let indices):
            guard descriptor.indirect[depth - 1] != 0 else { return 0 }
            var chain: [PointerNode] = []
            var number = descriptor.indirect[depth - 1]
            for (position, index) in indices.enumerated() {
                let level = depth - 1 - position
                let n = try node(number, level: level, fileBlock: block)
                chain.append(n)
                if level > 0 {
                    number = n.entries[index]
                    if number == 0 { return 0 }
                }
            }
            let old = try reader.checked(chain[chain.count - 1].entries[indices[indices.count - 1]], fileBlock: block)
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
