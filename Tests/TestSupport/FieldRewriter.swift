public import VMFSCore

/// An attacker's tool for tests: rewrites one field of an on-disk structure and re-seals the
/// sector the way `docs/FORMAT.md` says a writer does, so that every checksum, self-address and
/// version check passes and only the *meaning* of the field is wrong.
///
/// Corruption a checksum catches is easy; this is the other kind — a buggy or malicious host,
/// or a damaged LUN that happens to keep checksums right. Everything here is computed from the
/// documented format alone (addresses from the header's region offsets, CRC32C implemented
/// here, not borrowed from VMFSCore), so a test built on it also checks that the documentation
/// says what the code does. A structure-aware fuzzer can drive the same calls: pick a structure,
/// a field and a value, rewrite, then use the volume.
///
/// Re-sealing (§3 of `docs/FORMAT.md`): the CRC32C at offset 4 over the 4096 bytes with that
/// field zero, the self address at 16 (the primary's address, also in a mirror copy), and the
/// version at 24 raised by one (unless `bumpVersion` is false: journal sectors carry their
/// sequence there). The volume header (§2) has its CRC32C at offset 12 and no version.
///
/// ```swift
/// let attacker = try FieldRewriter(device: device)
/// try attacker.rewrite(.fileDescriptor(slot: 3), field: 56, to: UInt64.max)  // size of slot 3
/// ```
public struct FieldRewriter: Sendable {
    /// A documented structure, by position.
    public enum Structure: Sendable, Equatable, CustomStringConvertible {
        case volumeHeader
        case backupVolumeHeader
        case heartbeatSlot(Int)
        case lockRecord(Int)
        case nameTableSector(Int)
        case fileDescriptor(slot: Int)
        case pointerBlock(UInt32)
        case blockBitmap(cluster: Int)
        case pointerBitmap(cluster: Int)
        case journalHeader(slot: Int)
        /// Sector `sector` (≥ 1) of a host's journal: a transaction descriptor, image or commit record.
        case journalSector(slot: Int, sector: Int)

        public var description: String {
            switch self {
            case .volumeHeader: "volume header"
            case .backupVolumeHeader: "backup volume header"
            case .heartbeatSlot(let i): "heartbeat slot \(i)"
            case .lockRecord(let i): "lock record \(i)"
            case .nameTableSector(let i): "name table sector \(i)"
            case .fileDescriptor(let slot): "file descriptor \(slot)"
            case .pointerBlock(let n): "pointer block \(n)"
            case .blockBitmap(let c): "block cluster \(c) bitmap"
            case .pointerBitmap(let c): "pointer-block cluster \(c) bitmap"
            case .journalHeader(let slot): "journal \(slot) header"
            case .journalSector(let slot, let sector): "journal \(slot) sector \(sector)"
            }
        }
    }

    public let device: any BlockDevice
    public let header: VolumeHeader
    private static let sectorSize = 4096

    /// Works on `device`, whose volume header must be readable.
    public init(device: any BlockDevice) throws {
        self.device = device
        header = try Volume.readHeader(device)
    }

    /// Works on the image file or block device at `path` (opened read-write, without `O_DIRECT`).
    public init(path: String) throws {
        try self.init(device: try FileBlockDevice(path: path, readOnly: false, directIO: false))
    }

    private var layout: VolumeLayout { header.layout }

    // MARK: Where things are (docs/FORMAT.md §1)

    /// Byte address of the (primary) sector of `structure`.
    public func address(of structure: Structure) -> UInt64 {
        let s = UInt64(Self.sectorSize)
        switch structure {
        case .volumeHeader: return 0
        case .backupVolumeHeader: return layout.backupHeaderOffset
        case .heartbeatSlot(let i): return layout.heartbeatOffset + UInt64(i) * s
        case .lockRecord(let i): return layout.lockOffset + UInt64(i) * s
        case .nameTableSector(let i): return layout.nameTableOffset + UInt64(i) * s
        case .fileDescriptor(let slot): return layout.descriptorOffset + UInt64(slot) * s
        case .pointerBlock(let n): return layout.pointerNodeOffset + UInt64(n) * s
        case .blockBitmap(let c): return layout.blockBitmapOffset + UInt64(c) * s
        case .pointerBitmap(let c): return layout.pointerBitmapOffset + UInt64(c) * s
        case .journalHeader(let slot): return layout.journalOffset + UInt64(slot) * layout.journalSize
        case .journalSector(let slot, let sector): return layout.journalOffset + UInt64(slot) * layout.journalSize + UInt64(sector) * s
        }
    }

    /// Byte address of the mirror copy, for the mirrored structures.
    public func mirrorAddress(of structure: Structure) -> UInt64? {
        let s = UInt64(Self.sectorSize)
        switch structure {
        case .nameTableSector(let i): return layout.nameTableMirrorOffset + UInt64(i) * s
        case .fileDescriptor(let slot): return layout.descriptorMirrorOffset + UInt64(slot) * s
        case .pointerBlock(let n): return layout.pointerMirrorOffset + UInt64(n) * s
        default: return nil
        }
    }

    /// Byte address of data block `number` (block 0 is reserved).
    public func dataBlockAddress(_ number: UInt64) -> UInt64 { layout.dataOffset + number * UInt64(layout.blockSize) }

    // MARK: Reading

    /// The primary sector of `structure`.
    public func read(_ structure: Structure) throws -> [UInt8] {
        try device.read(count: Self.sectorSize, at: address(of: structure))
    }

    /// A little-endian field of the primary sector of `structure`.
    public func field<T: FixedWidthInteger>(_ structure: Structure, at offset: Int, as type: T.Type = T.self) throws -> T {
        Self.load(T.self, from: try read(structure), at: offset)
    }

    // MARK: Rewriting

    /// Sets the little-endian field at `offset` of `structure` to `value` and re-seals the
    /// sector; mirrored structures get the same bytes in both copies (so the mirror cannot help).
    public func rewrite<T: FixedWidthInteger>(_ structure: Structure, field offset: Int, to value: T,
                                              bumpVersion: Bool = true) throws {
        try rewrite(structure, bumpVersion: bumpVersion) { Self.store(value, into: &$0, at: offset) }
    }

    /// Edits the bytes of `structure` with `edit`, then re-seals and writes both copies.
    public func rewrite(_ structure: Structure, bumpVersion: Bool = true, _ edit: (inout [UInt8]) -> Void) throws {
        var bytes = try read(structure)
        edit(&bytes)
        seal(&bytes, structure, bumpVersion: bumpVersion)
        try device.write(bytes: bytes, at: address(of: structure))
        if let mirror = mirrorAddress(of: structure) { try device.write(bytes: bytes, at: mirror) }
    }

    /// Edits the committed transaction whose descriptor is journal sector `sector` of `slot`:
    /// `edit` gets the descriptor and the commit record; both are re-sealed (versions left as
    /// they are: they carry the sequence) and the commit record's checksum of the descriptor and
    /// the images (offset 40, §9) is recomputed.
    public func rewriteTransaction(journal slot: Int, at sector: Int,
                                   _ edit: (_ descriptor: inout [UInt8], _ commit: inout [UInt8]) -> Void) throws {
        let descriptorPlace = Structure.journalSector(slot: slot, sector: sector)
        var descriptor = try read(descriptorPlace)
        let records = Int(Self.load(UInt32.self, from: descriptor, at: 40))
        let commitPlace = Structure.journalSector(slot: slot, sector: sector + records + 1)
        var commit = try read(commitPlace)
        edit(&descriptor, &commit)
        seal(&descriptor, descriptorPlace, bumpVersion: false)
        var body = descriptor
        for i in 0..<records { body += try read(.journalSector(slot: slot, sector: sector + 1 + i)) }
        Self.store(Self.crc32c(body), into: &commit, at: 40)
        seal(&commit, commitPlace, bumpVersion: false)
        try device.write(bytes: descriptor, at: address(of: descriptorPlace))
        try device.write(bytes: commit, at: address(of: commitPlace))
    }

    private func seal(_ bytes: inout [UInt8], _ structure: Structure, bumpVersion: Bool) {
        switch structure {
        case .volumeHeader, .backupVolumeHeader:
            Self.store(UInt32(0), into: &bytes, at: 12)
            Self.store(Self.crc32c(bytes), into: &bytes, at: 12)
        default:
            Self.store(address(of: structure), into: &bytes, at: 16)
            if bumpVersion { Self.store(Self.load(UInt64.self, from: bytes, at: 24) &+ 1, into: &bytes, at: 24) }
            Self.store(UInt32(0), into: &bytes, at: 4)
            Self.store(Self.crc32c(bytes), into: &bytes, at: 4)
        }
    }

    // MARK: Little-endian fields

    /// The little-endian value at `offset` of `bytes`.
    public static func load<T: FixedWidthInteger>(_: T.Type, from bytes: [UInt8], at offset: Int) -> T {
        var value = T.zero
        for i in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[offset + i]) << (8 * i) }
        return value
    }

    /// Writes `value` little-endian at `offset` of `bytes`.
    public static func store<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}

extension FieldRewriter {
    private static let crcTable: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    /// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of `bytes`, written from the format
    /// description rather than taken from VMFSCore.
    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
