// fuzz-decoders: every on-disk decoder of VMFSCore on one sector of hostile bytes.
//
// Input: a decoder selector, a flags byte, a 16-bit index (slot, lock index, node number,
// cluster), then the sector's bytes (zero-padded to 4096). Unless flag bit 0 is set the harness
// seals the sector first (volume ID, self address, CRC32C; the header's CRC at offset 12), so
// the decoders' field checks are reached, not only their checksum check. Oracles: no trap, no
// memory error, and whatever a decoder accepts it encodes again into bytes that decode and
// re-encode to the same bytes (a decoder must not accept a value the encoder cannot keep).
@testable import VMFSCore
import FuzzSupport

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    SeedFiles.writeIfAsked(DecoderSeeds.make)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let decoder = Decoder.allCases[Int(input.byte()) % Decoder.allCases.count]
    let flags = input.byte()
    let index = Int(input.integer(UInt16.self))
    var sector = input.bytes(4096)
    let address = decoder.address(index: index)
    if flags & 1 == 0 {
        if decoder == .volumeHeader { SectorSealing.sealHeader(&sector) } else { SectorSealing.seal(&sector, address: address, volumeID: volumeID) }
    }
    decoder.roundTrip(sector, flags: flags, index: index, address: address)
    return 0
}

/// A fixed volume ID the harness seals sectors with.
let volumeID: UInt64 = 0x5EED_F00D_0123_4567

/// The decoders, each with where its sectors live and how to check a round trip.
enum Decoder: CaseIterable {
    case volumeHeader, heartbeatSlot, lockRecord, nameTable, fileDescriptor, pointerNode, bitmap, journalHeader

    /// A plausible self address for the structure with `index`.
    func address(index: Int) -> UInt64 {
        switch self {
        case .volumeHeader: index & 1 == 0 ? 0 : (160 << 20) - 4096
        default: UInt64(1 << 20) * UInt64(Decoder.allCases.firstIndex(of: self) ?? 0) + UInt64(index) * 4096
        }
    }

    /// Decodes `sector`; when it is accepted, checks that encode∘decode is stable.
    func roundTrip(_ sector: [UInt8], flags: UInt8, index: Int, address: UInt64) {
        func stable(_ decode: ([UInt8]) throws(VMFSError) -> [UInt8], _ what: String) {
            guard let first = try? decode(sector) else { return }
            let second: [UInt8]
            do { second = try decode(first) } catch {
                fatalError("fuzz oracle: \(what) re-encoded from an accepted sector does not decode: \(error)")
            }
            guard first == second else { fatalError("fuzz oracle: \(what) does not survive decode∘encode") }
        }
        switch self {
        case .volumeHeader:
            stable({ (bytes) throws(VMFSError) in try VolumeHeader.decode(bytes, offset: address).encoded() }, "volume header")
        case .heartbeatSlot:
            let slot = index % FormatConstants.maximumHosts
            stable({ (bytes) throws(VMFSError) in
                try HeartbeatSlot.decode(bytes, index: slot, volumeID: volumeID, address: address).encoded(volumeID: volumeID, address: address)
            }, "heartbeat slot")
        case .lockRecord:
            let kind = LockRecord.ObjectKind(rawValue: UInt16(flags >> 1) % 5) ?? .fileDescriptor
            stable({ (bytes) throws(VMFSError) in
                try LockRecord.decode(bytes, index: index, kind: kind, volumeID: volumeID, address: address)
                    .encoded(volumeID: volumeID, address: address)
            }, "lock record")
        case .nameTable:
            let sector = index % FormatConstants.nameTableSectors
            stable({ (bytes) throws(VMFSError) in
                try NameTableSector.decode(bytes, index: sector, volumeID: volumeID, address: address).encoded(volumeID: volumeID, address: address)
            }, "name table sector")
        case .fileDescriptor:
            let slot = index % FormatConstants.maxFiles
            let validation: FileDescriptorRecord.Validation = flags & 2 == 0 ? .forUse : .forRepair
            stable({ (bytes) throws(VMFSError) in
                try FileDescriptorRecord.decode(bytes, slot: slot, volumeID: volumeID, address: address, validation: validation)
                    .encoded(volumeID: volumeID, address: address)
            }, "file descriptor")
        case .pointerNode:
            stable({ (bytes) throws(VMFSError) in
                try PointerNode.decode(bytes, number: UInt32(index), volumeID: volumeID, address: address)
                    .encoded(volumeID: volumeID, address: address)
            }, "pointer block")
        case .bitmap:
            let pool: ClusterBitmap.Pool = flags & 2 == 0 ? .blocks : .pointers
            let itemCount = Int(flags >> 2) * 256 + 64  // 64…16384, as layouts make them
            let cluster = index % 512
            stable({ (bytes) throws(VMFSError) in
                try ClusterBitmap.decode(bytes, pool: pool, index: cluster, firstItem: UInt64(cluster * itemCount), itemCount: itemCount,
                                         volumeID: volumeID, address: address).encoded(volumeID: volumeID, address: address)
            }, "bitmap")
        case .journalHeader:
            let slot = index % FormatConstants.maximumHosts
            stable({ (bytes) throws(VMFSError) in
                try JournalHeader.decode(bytes, slot: slot, volumeID: volumeID, address: address)?.encoded(volumeID: volumeID, address: address)
                    ?? [UInt8](repeating: 0, count: 4096)
            }, "journal header")
        }
    }
}
