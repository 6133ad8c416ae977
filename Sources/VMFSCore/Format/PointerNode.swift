/// A pointer block: a 4 KiB node of a file's block map (mirrored).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `PTND`) |
/// | 32 | 4 | node number |
/// | 36 | 2 | level: 0 points at data blocks, 1 and 2 at pointer blocks |
/// | 38 | 2 | owning file slot |
/// | 40 | 4 | owning file generation |
/// | 64 | 4 × 1008 | entries (data block pointers at level 0, node numbers above; 0 = none) |
public struct PointerNode: Sendable, Equatable {
    public var number: UInt32
    public var level: Int
    public var ownerSlot: Int
    public var ownerGeneration: UInt32
    public var entries: [UInt32]
    public var version: UInt64 = 0

    public init(number: UInt32, level: Int, ownerSlot: Int, ownerGeneration: UInt32) {
        self.number = number
        self.level = level
        self.ownerSlot = ownerSlot
        self.ownerGeneration = ownerGeneration
        self.entries = Array(repeating: 0, count: FormatConstants.pointerEntries)
    }

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.pointer, volumeID: volumeID, address: address, version: version) { w in
            w.put(number, at: 32)
            w.put(UInt16(level), at: 36)
            w.put(UInt16(ownerSlot), at: 38)
            w.put(ownerGeneration, at: 40)
            for (i, entry) in entries.enumerated() where entry != 0 {
                w.put(entry, at: FormatConstants.pointerEntriesOffset + 4 * i)
            }
        }
    }

    /// Decodes a node; a pristine sector is an error here because nodes are only read when a map
    /// points at them.
    static func decode(_ bytes: [UInt8], number: UInt32, volumeID: UInt64, address: UInt64) throws(VMFSError) -> PointerNode {
        let structure = "pointer block \(number)"
        switch try SectorCodec.open(bytes, magic: .pointer, volumeID: volumeID, address: address, structure: structure) {
        case .pristine:
            throw VMFSError(.corrupt, "\(structure) is referenced but was never written", location: .init(structure: structure, offset: address))
        case .valid(let r, let version):
            guard r.u32(32) == number, r.u16(36) <= 2 else {
                throw VMFSError(.corrupt, "\(structure) has inconsistent number or level", location: .init(structure: structure, offset: address + 32))
            }
            var node = PointerNode(number: number, level: Int(r.u16(36)), ownerSlot: Int(r.u16(38)), ownerGeneration: r.u32(40))
            node.version = version
            node.entries = r.u32Array(at: FormatConstants.pointerEntriesOffset, count: FormatConstants.pointerEntries)
            return node
        }
    }
}
