/// Reads a file's block map — the descriptor's direct entries and its pointer-block tree — and
/// hands out only block numbers it has checked.
///
/// This is the one place block numbers from disk enter the data path: every lookup, scan and
/// clear of a map goes through it, whether the map is read under the file's lock (``BlockMap``,
/// through the metadata store) or without it (``VolumeInspector``, the block-use scan). A data
/// entry must be 0 (a hole) or name a block in `1..<N` (written, or unwritten with bit 31); a
/// pointer-block reference must name a node in `1..<P` that says it belongs to this file, at the
/// level the path expects. Anything else is a ``VMFSError/Code/corrupt`` error naming the file,
/// the file block and the value — never a device offset computed from it.
struct BlockMapReader {
    let layout: VolumeLayout
    let descriptor: FileDescriptorRecord
    /// The file's name, for messages.
    let fileName: String
    /// Reads and decodes pointer block `number` (a number already checked to be inside the volume).
    let readNode: (UInt32) throws(VMFSError) -> PointerNode

    private static let fanout = FormatConstants.pointerEntries

    /// How messages name the file: `file 'vm.vmdk' (slot 3)`.
    var fileLabel: String { "file '\(fileName)' (slot \(descriptor.slot))" }

    /// A corrupt-metadata error located at the file's descriptor.
    func corrupt(_ what: String) -> VMFSError {
        VMFSError(.corrupt, "\(fileLabel): \(what); run fsck.vmfs",
                  location: .init(structure: "file descriptor \(descriptor.slot)", offset: layout.descriptor(descriptor.slot)))
    }

    /// `entry` if it is a hole or names a data block inside the volume; else a corrupt error.
    func checked(_ entry: UInt32, fileBlock: UInt64) throws(VMFSError) -> UInt32 {
        guard entry != 0 else { return 0 }
        let number = UInt64(entry & ~FormatConstants.unwrittenFlag)
        guard number > 0, number < layout.totalBlocks else {
            throw corrupt("file block \(fileBlock) points at data block \(number) (entry 0x\(String(entry, radix: 16))), "
                          + "outside the volume's data blocks 1..<\(layout.totalBlocks)")
        }
        return entry
    }

    /// Pointer block `number` at `level`, checked to lie inside the volume and to belong to this file.
    func node(_ number: UInt32, level: Int, fileBlock: UInt64) throws(VMFSError) -> PointerNode {
        guard number > 0, number < layout.pointerNodeCount else {
            throw corrupt("file block \(fileBlock) is reached through pointer block \(number), outside the volume's "
                          + "pointer blocks 1..<\(layout.pointerNodeCount)")
        }
        let node = try readNode(number)
        guard node.level == level, node.ownerSlot == descriptor.slot, node.ownerGeneration == descriptor.generation else {
            throw VMFSError(.corrupt, "pointer block \(number) belongs to slot \(node.ownerSlot) generation \(node.ownerGeneration) "
                            + "level \(node.level), not to \(fileLabel) generation \(descriptor.generation) level \(level) "
                            + "(reached for file block \(fileBlock)); run fsck.vmfs",
                            location: .init(structure: "pointer block \(number)", offset: layout.pointerNode(number)))
        }
        return node
    }

    /// The checked map entry of file block `block` (0 = hole).
    func entry(at block: UInt64) throws(VMFSError) -> UInt32 {
        guard let path = BlockMapGeometry.path(forBlock: block) else { return 0 }
        switch path {
        case .direct(let i):
            return try checked(descriptor.direct[i], fileBlock: block)
        case .indirect(let depth, let indices):
            var number = descriptor.indirect[depth - 1]
            for (position, index) in indices.enumerated() {
                if number == 0 { return 0 }
                let level = depth - 1 - position
                let n = try node(number, level: level, fileBlock: block)
                if level == 0 { return try checked(n.entries[index], fileBlock: block) }
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
            number = try node(number, level: level, fileBlock: block).entries[index]
        }
        return 0
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
            number = try node(number, level: level, fileBlock: block).entries[index]
        }
        return result
    }

    /// The first mapped block in `[from, limit)` and its checked entry, skipping empty subtrees.
    func nextMapped(from: UInt64, limit: UInt64) throws(VMFSError) -> (block: UInt64, entry: UInt32)? {
        var block = from
        let direct = BlockMapGeometry.direct
        while block < min(direct, limit) {
            let entry = descriptor.direct[Int(block)]
            if entry != 0 { return (block, try checked(entry, fileBlock: block)) }
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
        let n = try node(number, level: level, fileBlock: max(from, base))
        let span = BlockMapGeometry.span(ofLevel: level)
        var index = Int((from - base) / span)
        while index < Self.fanout {
            let childBase = base + UInt64(index) * span
            if childBase >= limit { return nil }
            let e = n.entries[index]
            if e != 0 {
                if level == 0 { return (childBase, try checked(e, fileBlock: childBase)) }
                if let found = try scan(e, level: level - 1, base: childBase, from: max(from, childBase), limit: limit) {
                    return found
                }
            }
            index += 1
        }
        return nil
    }

    /// Calls `body` with every mapped file block and its checked entry, in file order, reading
    /// each pointer block once. With `skippingDamage`, an entry or pointer block that fails its
    /// check is passed over (with what is below it) instead of ending the walk.
    func forEachMapped(skippingDamage: Bool = false,
                       _ body: (_ fileBlock: UInt64, _ entry: UInt32) throws(VMFSError) -> Void) throws(VMFSError) {
        for i in 0..<FormatConstants.directPointers where descriptor.direct[i] != 0 {
            let entry: UInt32
            do throws(VMFSError) { entry = try checked(descriptor.direct[i], fileBlock: UInt64(i)) } catch {
                if skippingDamage { continue }
                throw error
            }
            try body(UInt64(i), entry)
        }
        for depth in 1...3 where descriptor.indirect[depth - 1] != 0 {
            try walk(descriptor.indirect[depth - 1], level: depth - 1, base: BlockMapGeometry.firstBlock(ofDepth: depth),
                     skippingDamage: skippingDamage, body)
        }
    }

    private func walk(_ number: UInt32, level: Int, base: UInt64, skippingDamage: Bool,
                      _ body: (UInt64, UInt32) throws(VMFSError) -> Void) throws(VMFSError) {
        let n: PointerNode
        do throws(VMFSError) { n = try node(number, level: level, fileBlock: base) } catch {
            if skippingDamage { return }
            throw error
        }
        let span = BlockMapGeometry.span(ofLevel: level)
        for index in 0..<Self.fanout where n.entries[index] != 0 {
            let childBase = base + UInt64(index) * span
            if level > 0 {
                try walk(n.entries[index], level: level - 1, base: childBase, skippingDamage: skippingDamage, body)
                continue
            }
            let entry: UInt32
            do throws(VMFSError) { entry = try checked(n.entries[index], fileBlock: childBase) } catch {
                if skippingDamage { continue }
                throw error
            }
            try body(childBase, entry)
        }
    }
}
