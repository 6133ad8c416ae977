/// The 32-byte header every metadata sector starts with, and its checksum.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic (``SectorMagic``) |
/// | 4 | 4 | CRC32C of the whole sector with this field zero |
/// | 8 | 8 | volume ID (first 8 bytes of the volume UUID) |
/// | 16 | 8 | byte offset of this sector on the device (self address) |
/// | 24 | 8 | object version, +1 on every change |
///
/// A sector of all zero bytes is *pristine*: never written since `mkfs`. It stands for the
/// empty state of its structure (free slot, free lock, free cluster, empty journal).
enum SectorCodec {
    static let headerSize = 32

    /// What reading a metadata sector found.
    enum Content {
        /// All zero: the structure's empty state.
        case pristine
        /// A valid sector; its fields and its version.
        case valid(ByteReader, version: UInt64)
    }

    /// Writes the header into `writer` and seals the sector with its checksum.
    static func seal(_ writer: inout ByteWriter, magic: SectorMagic, volumeID: UInt64, address: UInt64, version: UInt64) {
        writer.put(magic.rawValue, at: 0)
        writer.put(UInt32(0), at: 4)
        writer.put(volumeID, at: 8)
        writer.put(address, at: 16)
        writer.put(version, at: 24)
        writer.put(CRC32C.checksum(writer.bytes, excludingFieldAt: 4), at: 4)
    }

    /// A sealed sector of `magic` whose body `fill` writes (offsets from 0; 0..<32 is the header).
    static func make(_ magic: SectorMagic, volumeID: UInt64, address: UInt64, version: UInt64,
                     _ fill: (inout ByteWriter) -> Void) -> [UInt8] {
        var writer = ByteWriter(count: FormatConstants.sectorSize)
        fill(&writer)
        seal(&writer, magic: magic, volumeID: volumeID, address: address, version: version)
        return writer.bytes
    }

    /// Validates a sector read from `address`.
    ///
    /// - Throws: ``VMFSError/Code/corrupt`` naming the structure and offset when the magic, the
    ///   checksum, the volume ID or the self address is wrong.
    static func open(_ bytes: [UInt8], magic: SectorMagic, volumeID: UInt64, address: UInt64,
                     structure: String? = nil) throws(VMFSError) -> Content {
        let reader = ByteReader(bytes)
        let name = structure ?? magic.structureName
        func corrupt(_ what: String) -> VMFSError {
            VMFSError(.corrupt, "\(name) is corrupt: \(what)", location: .init(structure: name, offset: address))
        }
        guard bytes.count == FormatConstants.sectorSize else { throw corrupt("short sector") }
        if reader.u32(0) == 0 && reader.isAllZero { return .pristine }
        guard reader.u32(0) == magic.rawValue else {
            throw corrupt("wrong magic 0x\(String(reader.u32(0), radix: 16)), expected 0x\(String(magic.rawValue, radix: 16))")
        }
        let stored = reader.u32(4)
        let computed = CRC32C.checksum(bytes, excludingFieldAt: 4)
        guard stored == computed else {
            throw corrupt("checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))")
        }
        guard reader.u64(8) == volumeID else { throw corrupt("belongs to another volume") }
        guard reader.u64(16) == address else {
            throw corrupt("self address \(reader.u64(16)) does not match its position")
        }
        return .valid(reader, version: reader.u64(24))
    }

    /// The version stored in a sector without validating it (0 when unreadable).
    static func version(of bytes: [UInt8]) -> UInt64 {
        bytes.count >= headerSize ? ByteReader(bytes).u64(24) : 0
    }
}
