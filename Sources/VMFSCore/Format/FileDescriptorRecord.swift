/// A file descriptor (inode): a 4 KiB sector per file slot, mirrored.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `FDSC`) |
/// | 32 | 2 | slot index |
/// | 34 | 2 | flags: bit 0 in use, bit 1 inline data, bit 2 orphan (unlinked, blocks being freed) |
/// | 36 | 4 | generation (+1 each time the slot is reused) |
/// | 40 | 4 | mode (file type and permission bits) |
/// | 44 | 4 | uid |
/// | 48 | 4 | gid |
/// | 56 | 8 | size in bytes |
/// | 64 | 8 | data blocks allocated |
/// | 72 | 8 | pointer blocks allocated |
/// | 80 | 8 | atime, ns |
/// | 88 | 8 | mtime, ns |
/// | 96 | 8 | ctime, ns |
/// | 104 | 8 | birth time, ns |
/// | 112 | 8 | mapped end: one past the highest file block that may be mapped |
/// | 120 | 4 | number of direct pointers (952) |
/// | 128 | 128 | name hint (the name when last written by the lock holder; for recovery) |
/// | 256 | 4 | single-indirect pointer block |
/// | 260 | 4 | double-indirect pointer block |
/// | 264 | 4 | triple-indirect pointer block |
/// | 272 | 3808 | 952 direct block pointers, or inline data when flag bit 1 is set |
///
/// A block pointer is the data block number in bits 0–30 (0 = hole) and the *unwritten* flag in
/// bit 31 (allocated, reads as zeros until written).
///
/// Ranges (checked when decoding ``Validation/forUse``): size ≤ 2^48 (``FormatConstants/maxFileSize``),
/// data blocks ≤ 2^31 − 1, pointer blocks ≤ 2^32 − 1, mapped end ≤ the block map's reach. Block
/// numbers are checked against the volume when the map is read (``BlockMapReader``).
public struct FileDescriptorRecord: Sendable, Equatable {
    /// How much decoding checks beyond the sector's integrity.
    enum Validation {
        /// Every field inside its documented range: what a host relies on.
        case forUse
        /// Only what reading the fields needs: `fsck.vmfs` checks and repairs ranges itself.
        case forRepair
    }

    /// Most data blocks any volume has (the block count is capped at 2^31 − 1).
    static let maxBlockCount = UInt64(Int32.max)

    public var slot: Int
    public var inUse = false
    public var isInline = false
    public var isOrphan = false
    public var generation: UInt32 = 0
    public var mode: UInt32 = 0o100644
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var size: UInt64 = 0
    public var allocatedBlocks: UInt64 = 0
    public var pointerBlocks: UInt64 = 0
    public var accessTime: Int64 = 0
    public var modificationTime: Int64 = 0
    public var changeTime: Int64 = 0
    public var birthTime: Int64 = 0
    public var mappedEnd: UInt64 = 0
    public var nameHint: String = ""
    /// Root pointer blocks: single, double, triple indirect (0 = none).
    public var indirect: [UInt32] = [0, 0, 0]
    /// Direct pointers (952 entries) when not inline.
    public var direct: [UInt32] = Array(repeating: 0, count: FormatConstants.directPointers)
    /// Inline data (at most 3808 bytes) when ``isInline``.
    public var inlineData: [UInt8] = []
    public var version: UInt64 = 0

    public init(slot: Int) { self.slot = slot }

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.descriptor, volumeID: volumeID, address: address, version: version) { w in
            w.put(UInt16(slot), at: 32)
            var flags: UInt16 = 0
            if inUse { flags |= 1 }
            if isInline { flags |= 2 }
            if isOrphan { flags |= 4 }
            w.put(flags, at: 34)
            w.put(generation, at: 36)
            w.put(mode, at: 40)
            w.put(uid, at: 44)
            w.put(gid, at: 48)
            w.put(size, at: 56)
            w.put(allocatedBlocks, at: 64)
            w.put(pointerBlocks, at: 72)
            w.put(accessTime, at: 80)
            w.put(modificationTime, at: 88)
            w.put(changeTime, at: 96)
            w.put(birthTime, at: 104)
            w.put(mappedEnd, at: 112)
            w.put(UInt32(FormatConstants.directPointers), at: 120)
            w.put(string: nameHint, at: 128, width: 127)
            for (i, pointer) in indirect.enumerated() { w.put(pointer, at: 256 + 4 * i) }
            let base = FormatConstants.descriptorMapOffset
            if isInline {
                w.put(bytes: inlineData, at: base, maxCount: FormatConstants.inlineCapacity)
            } else {
                for (i, pointer) in direct.enumerated() where pointer != 0 { w.put(pointer, at: base + 4 * i) }
            }
        }
    }

    static func decode(_ bytes: [UInt8], slot: Int, volumeID: UInt64, address: UInt64,
                       validation: Validation = .forUse) throws(VMFSError) -> FileDescriptorRecord {
        var record = FileDescriptorRecord(slot: slot)
        let structure = "file descriptor \(slot)"
        switch try SectorCodec.open(bytes, magic: .descriptor, volumeID: volumeID, address: address, structure: structure) {
        case .pristine:
            return record
        case .valid(let r, let version):
            func corrupt(_ what: String, _ field: Int) -> VMFSError {
                VMFSError(.corrupt, "\(structure) is corrupt: \(what)", location: .init(structure: structure, offset: address + UInt64(field)))
            }
            guard Int(r.u16(32)) == slot else { throw corrupt("slot field is \(r.u16(32))", 32) }
            let flags = r.u16(34)
            guard flags & ~7 == 0 else { throw corrupt("unknown flags 0x\(String(flags, radix: 16))", 34) }
            guard r.u32(120) == UInt32(FormatConstants.directPointers) else { throw corrupt("direct pointer count \(r.u32(120))", 120) }
            record.version = version
            record.inUse = flags & 1 != 0
            record.isInline = flags & 2 != 0
            record.isOrphan = flags & 4 != 0
            record.generation = r.u32(36)
            record.mode = r.u32(40)
            record.uid = r.u32(44)
            record.gid = r.u32(48)
            record.size = r.u64(56)
            record.allocatedBlocks = r.u64(64)
            record.pointerBlocks = r.u64(72)
            record.accessTime = r.i64(80)
            record.modificationTime = r.i64(88)
            record.changeTime = r.i64(96)
            record.birthTime = r.i64(104)
            record.mappedEnd = r.u64(112)
            record.nameHint = r.string(at: 128, width: 127) ?? ""
            record.indirect = [r.u32(256), r.u32(260), r.u32(264)]
            let base = FormatConstants.descriptorMapOffset
            if record.isInline {
                guard record.size <= UInt64(FormatConstants.inlineCapacity) else {
                    throw corrupt("inline file of \(record.size) bytes exceeds \(FormatConstants.inlineCapacity)", 56)
                }
                guard record.indirect == [0, 0, 0] else { throw corrupt("inline file has pointer blocks", 256) }
                record.inlineData = r.slice(base, Int(record.size))
            } else {
                record.direct = r.u32Array(at: base, count: FormatConstants.directPointers)
            }
            if validation == .forUse { try record.checkRanges(corrupt) }
            return record
        }
    }

    /// Throws when a size or count lies outside its documented range: such a value can only be
    /// damage, and arithmetic on it (allocated bytes, the blocks a size covers) must never trap.
    private func checkRanges(_ corrupt: (String, Int) -> VMFSError) throws(VMFSError) {
        guard size <= FormatConstants.maxFileSize else {
            throw corrupt("size \(size) exceeds the maximum file size of \(FormatConstants.maxFileSize) bytes (fsck.vmfs -y repairs it)", 56)
        }
        guard allocatedBlocks <= Self.maxBlockCount else {
            throw corrupt("data block count \(allocatedBlocks) exceeds \(Self.maxBlockCount)", 64)
        }
        guard pointerBlocks <= UInt64(UInt32.max) else {
            throw corrupt("pointer block count \(pointerBlocks) exceeds \(UInt32.max)", 72)
        }
        guard mappedEnd <= BlockMapGeometry.reachInBlocks else {
            throw corrupt("mapped end \(mappedEnd) lies beyond the block map's reach of \(BlockMapGeometry.reachInBlocks) blocks", 112)
        }
    }
}
