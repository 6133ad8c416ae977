@testable import VMFSCore
import VMFSTestSupport

/// Seals a sector image the way a writer does (docs/FORMAT.md §2, §3), for harnesses that build
/// sectors themselves rather than rewriting ones on a device (``FieldRewriter`` does that).
public enum SectorSealing {
    /// Sets the volume ID, self address and (when given) version, then the CRC32C at offset 4.
    public static func seal(_ sector: inout [UInt8], address: UInt64, volumeID: UInt64, version: UInt64? = nil) {
        FieldRewriter.store(volumeID, into: &sector, at: 8)
        FieldRewriter.store(address, into: &sector, at: 16)
        if let version { FieldRewriter.store(version, into: &sector, at: 24) }
        FieldRewriter.store(UInt32(0), into: &sector, at: 4)
        FieldRewriter.store(CRC32C.checksum(sector, excludingFieldAt: 4), into: &sector, at: 4)
    }

    /// Recomputes the volume header's CRC32C at offset 12.
    public static func sealHeader(_ sector: inout [UInt8]) {
        FieldRewriter.store(UInt32(0), into: &sector, at: 12)
        FieldRewriter.store(CRC32C.checksum(sector, excludingFieldAt: 12), into: &sector, at: 12)
    }

    /// The version field (offset 24) of a sector image.
    public static func version(of sector: [UInt8]) -> UInt64 { FieldRewriter.load(UInt64.self, from: sector, at: 24) }

    /// Stores `value` little-endian at `offset`.
    public static func store<T: FixedWidthInteger>(_ value: T, into sector: inout [UInt8], at offset: Int) {
        FieldRewriter.store(value, into: &sector, at: offset)
    }
}
