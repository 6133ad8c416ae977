@testable import VMFSCore
import FuzzSupport

/// Builds the crashed host's journal from fuzz input (see JournalReplayFuzzer.swift): sealed
/// sectors with the documented layout (docs/FORMAT.md §9) and hostile values in their fields.
struct JournalBuilder {
    let seed: SeedVolume
    static let maximumTransactions = 6
    static let maximumRecords = 8

    private var layout: VolumeLayout { seed.header.layout }
    private var volumeID: UInt64 { seed.header.volumeID }

    /// The journal's bytes from its start (header, then transactions), at most the journal size.
    func build(_ input: inout FuzzInput) -> [UInt8] {
        let start = layout.journal(seed.crashedSlot)
        let flags = input.byte()
        let startSequence = flags & 2 == 0 ? UInt64(input.byte()) + 1 : input.extreme()
        let owner = flags & 4 == 0 ? seed.crashedSlot : Int(input.integer(UInt16.self))
        var header = JournalHeader(slot: owner, startSequence: startSequence, resetBy: .zero, version: 1)
        header.version = UInt64(input.byte())
        var bytes = header.encoded(volumeID: volumeID, address: start)
        if flags & 1 != 0 { bytes[32 + Int(input.byte()) % 40] ^= 0xFF }  // damaged: checksum no longer matches

        var sequence = startSequence
        for _ in 0..<Int(input.byte()) % (Self.maximumTransactions + 1) {
            let transactionFlags = input.byte()
            let number = transactionFlags & 1 == 0 ? sequence : input.extreme()
            let checkpointed = transactionFlags & 2 == 0 ? number &- UInt64(input.byte() % 3) : input.extreme()
            let records = (0..<Int(input.byte()) % (Self.maximumRecords + 1)).map { _ in record(&input) }
            guard bytes.count + (records.count + 2) * FormatConstants.sectorSize <= Int(layout.journalSize) else { break }
            let transaction = JournalTransaction(sequence: number, checkpointedThrough: checkpointed, commitTime: 0,
                                                 ownerGeneration: input.extreme(), records: records)
            var encoded = transaction.encoded(volumeID: volumeID, at: start + UInt64(bytes.count))
            if transactionFlags & 4 != 0 { editDescriptor(&encoded, records: records.count, at: start + UInt64(bytes.count), &input) }
            bytes += encoded
            sequence = number &+ 1
        }
        return bytes
    }

    /// One record: a home sector (one the seed wrote, or any address) and its edited, re-sealed image.
    private func record(_ input: inout FuzzInput) -> (address: UInt64, image: [UInt8]) {
        let homes = journaledHomes
        let choice = input.byte()
        let home = choice < 0xF0 ? homes[Int(choice) % homes.count] : input.extreme()
        var image = seed.snapshot.sector(at: home % seed.snapshot.size / 4096 * 4096)
        let kind: DocumentedFields.Kind = switch layout.expectedMagic(at: home) {
        case .nameTable?: .nameTable
        case .bitmap?: .bitmap
        case .pointer?: .pointerBlock
        default: .fileDescriptor
        }
        for _ in 0..<Int(input.byte() % 3) { FieldEdit(kind: kind, from: &input).apply(to: &image) }
        let version = SectorSealing.version(of: image) &+ UInt64(input.byte())
        SectorSealing.seal(&image, address: home, volumeID: volumeID, version: version)
        return (home, image)
    }

    /// Addresses of the journaled sectors the seed wrote.
    private var journaledHomes: [UInt64] {
        var homes = (seed.written[.fileDescriptor] ?? []).map { layout.descriptor($0) }
        homes += (seed.written[.nameTable] ?? []).map { layout.nameTableSector($0) }
        homes += (seed.written[.blockBitmap] ?? []).map { layout.blockBitmap($0) }
        homes += (seed.written[.pointerBitmap] ?? []).map { layout.pointerBitmap($0) }
        homes += (seed.written[.pointerBlock] ?? []).map { layout.pointerNode(UInt32($0)) }
        return homes
    }

    /// Edits a field of the transaction's descriptor, re-seals it and (unless the input says to
    /// leave it stale) recomputes the commit record's checksum of descriptor and images.
    private func editDescriptor(_ bytes: inout [UInt8], records: Int, at address: UInt64, _ input: inout FuzzInput) {
        let s = FormatConstants.sectorSize
        var descriptor = Array(bytes[0..<s])
        FieldEdit(kind: .journalDescriptor, from: &input).apply(to: &descriptor)
        SectorSealing.seal(&descriptor, address: address, volumeID: volumeID)
        bytes.replaceSubrange(0..<s, with: descriptor)
        guard input.byte() & 1 == 0 else { return }
        let commitStart = (records + 1) * s
        var commit = Array(bytes[commitStart..<(commitStart + s)])
        SectorSealing.store(CRC32C.checksum(Array(bytes[0..<commitStart])), into: &commit, at: 40)
        SectorSealing.seal(&commit, address: address + UInt64(commitStart), volumeID: volumeID)
        bytes.replaceSubrange(commitStart..<(commitStart + s), with: commit)
    }
}
