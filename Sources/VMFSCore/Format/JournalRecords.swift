/// The header sector of a host's journal.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `JNRH`, version +1 per reset) |
/// | 32 | 4 | heartbeat slot the journal belongs to |
/// | 40 | 8 | sequence number of the first transaction (at sector 1) |
/// | 48 | 16 | host that last reset the journal |
///
/// A pristine header is an empty journal. Sequence numbers run from 1 to 2^62 − 1
/// (``sequenceLimit``): far more commits than any host makes, and never near an overflow.
struct JournalHeader: Sendable, Equatable {
    /// The first sequence number that is out of range.
    static let sequenceLimit: UInt64 = 1 << 62

    /// The sequence that follows `sequence`: one more, or 1 again at the end of the range.
    static func sequence(after sequence: UInt64) -> UInt64 {
        sequence < sequenceLimit - 1 ? sequence + 1 : 1
    }

    var slot: Int
    var startSequence: UInt64 = 1
    var resetBy: HostUUID = .zero
    var version: UInt64 = 0

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.journalHeader, volumeID: volumeID, address: address, version: version) { w in
            w.put(UInt32(slot), at: 32)
            w.put(startSequence, at: 40)
            w.put(uuid: resetBy, at: 48)
        }
    }

    /// Decodes a header; `nil` for a pristine (empty) journal.
    static func decode(_ bytes: [UInt8], slot: Int, volumeID: UInt64, address: UInt64) throws(VMFSError) -> JournalHeader? {
        switch try SectorCodec.open(bytes, magic: .journalHeader, volumeID: volumeID, address: address,
                                    structure: "journal \(slot) header") {
        case .pristine:
            return nil
        case .valid(let r, let version):
            guard Int(r.u32(32)) == slot else {
                throw VMFSError(.corrupt, "journal \(slot) header names slot \(r.u32(32))",
                                location: .init(structure: "journal \(slot) header", offset: address + 32))
            }
            guard r.u64(40) > 0, r.u64(40) < sequenceLimit else {
                throw VMFSError(.corrupt, "journal \(slot) header's start sequence \(r.u64(40)) is outside 1..<2^62",
                                location: .init(structure: "journal \(slot) header", offset: address + 40))
            }
            return JournalHeader(slot: slot, startSequence: r.u64(40), resetBy: r.uuid(at: 48), version: version)
        }
    }
}

/// The first sector of a journal transaction: which home sectors the following images belong to.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `JTXD`, version = sequence) |
/// | 32 | 8 | sequence number |
/// | 40 | 4 | record count N (≤ 251) |
/// | 44 | 4 | sectors in the transaction (N + 2) |
/// | 48 | 8 | checkpointed-through: every transaction with a lower or equal sequence is durable at home |
/// | 56 | 8 | commit wall time, ns |
/// | 64 | 8 | the journal owner's heartbeat generation |
/// | 80 | 16 × N | records: home byte offset (8), image version (8) |
///
/// It is followed by N sector images and a commit sector (magic `JTXC`) holding, at offset 32 the
/// sequence, at 40 the CRC32C of the descriptor and the N images, at 44 the record count.
struct JournalTransaction: Sendable {
    var sequence: UInt64
    var checkpointedThrough: UInt64
    var commitTime: Int64
    var ownerGeneration: UInt64
    /// (home address, image) pairs; every image is a sealed metadata sector.
    var records: [(address: UInt64, image: [UInt8])]

    var sectorCount: Int { records.count + 2 }

    /// The transaction's sectors, in order, as one contiguous byte array.
    func encoded(volumeID: UInt64, at start: UInt64) -> [UInt8] {
        let s = FormatConstants.sectorSize
        let descriptor = SectorCodec.make(.journalDescriptor, volumeID: volumeID, address: start, version: sequence) { w in
            w.put(sequence, at: 32)
            w.put(UInt32(records.count), at: 40)
            w.put(UInt32(records.count + 2), at: 44)
            w.put(checkpointedThrough, at: 48)
            w.put(commitTime, at: 56)
            w.put(ownerGeneration, at: 64)
            for (i, record) in records.enumerated() {
                let base = FormatConstants.journalEntriesOffset + i * FormatConstants.journalEntrySize
                w.put(record.address, at: base)
                w.put(SectorCodec.version(of: record.image), at: base + 8)
            }
        }
        var bytes = descriptor
        bytes.reserveCapacity(s * sectorCount)
        for record in records { bytes += record.image }
        let crc = CRC32C.checksum(bytes)
        let commitAddress = start + UInt64((records.count + 1) * s)
        let commit = SectorCodec.make(.journalCommit, volumeID: volumeID, address: commitAddress, version: sequence) { w in
            w.put(sequence, at: 32)
            w.put(crc, at: 40)
            w.put(UInt32(records.count), at: 44)
        }
        return bytes + commit
    }
}
