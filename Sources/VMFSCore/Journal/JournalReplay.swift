/// Reads a host's journal and replays its committed transactions.
///
/// Replay is idempotent and safe across hosts: an image is written to its home (and mirror) only
/// when the sector there is corrupt or holds an older version than the image. A stale journal
/// of a host that died therefore never overwrites what another host wrote later under the lock.
enum JournalReplay {
    /// A committed transaction found in a journal.
    struct Transaction: Sendable {
        var sequence: UInt64
        var checkpointedThrough: UInt64
        var sector: Int
        var records: [(address: UInt64, image: [UInt8])]
    }

    /// What a scan of a journal found.
    struct Scan: Sendable {
        var slot: Int
        var header: JournalHeader?
        /// The valid chain of transactions from the header's start sequence.
        var transactions: [Transaction] = []
        /// Why the chain ended, when it ended on something other than an empty or stale sector.
        var damage: String?
        /// Transactions after this sequence still need replay.
        var checkpointedThrough: UInt64 = 0

        /// Transactions that must be replayed.
        var pending: [Transaction] { transactions.filter { $0.sequence > checkpointedThrough } }
        /// The sequence a fresh journal should start at.
        var nextSequence: UInt64 {
            JournalHeader.sequence(after: transactions.last?.sequence ?? header?.startSequence ?? 0)
        }
    }

    /// What a replay did.
    struct Result: Sendable, Equatable {
        var transactions = 0
        var sectorsWritten = 0
        var sectorsSkipped = 0
    }

    /// Reads and parses journal `slot`.
    ///
    /// - Throws: ``VMFSError/Code/corrupt`` when the journal header itself is damaged.
    static func scan(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64, slot: Int) throws(VMFSError) -> Scan {
        let start = layout.journal(slot)
        let sectorSize = FormatConstants.sectorSize
        var scan = Scan(slot: slot)
        guard let header = try JournalHeader.decode(try device.read(count: sectorSize, at: start), slot: slot,
                                                    volumeID: volumeID, address: start) else {
            return scan
        }
        let region = try device.read(count: Int(layout.journalSize), at: start)
        func sector(_ i: Int) -> [UInt8] { Array(region[(i * sectorSize)..<((i + 1) * sectorSize)]) }
        scan.header = header
        let capacity = Int(layout.journalSize) / sectorSize
        var index = 1
        var expected = header.startSequence
        while index < capacity {
            let address = start + UInt64(index * sectorSize)
            let descriptorBytes = sector(index)
            guard case .valid(let d, _)? = try? SectorCodec.open(descriptorBytes, magic: .journalDescriptor,
                                                                  volumeID: volumeID, address: address) else {
                if !ByteReader(descriptorBytes).isAllZero && ByteReader(descriptorBytes).u32(0) == SectorMagic.journalDescriptor.rawValue {
                    scan.damage = "transaction descriptor at journal sector \(index) fails validation"
                }
                break
            }
            let sequence = d.u64(32)
            if sequence != expected { break }  // a stale record of an earlier epoch: end of the log
            let count = Int(d.u32(40))
            guard count <= FormatConstants.maxRecordsPerTransaction, Int(d.u32(44)) == count + 2,
                  index + count + 2 <= capacity else {
                scan.damage = "transaction \(sequence) at journal sector \(index) has an invalid size"
                break
            }
            let commitAddress = start + UInt64((index + count + 1) * sectorSize)
            guard case .valid(let c, _)? = try? SectorCodec.open(sector(index + count + 1), magic: .journalCommit,
                                                                  volumeID: volumeID, address: commitAddress),
                  c.u64(32) == sequence, Int(c.u32(44)) == count else {
                // A transaction whose commit record never landed was never acknowledged.
                break
            }
            var body = descriptorBytes
            for i in 0..<count { body += sector(index + 1 + i) }
            guard CRC32C.checksum(body) == c.u32(40) else {
                scan.damage = "transaction \(sequence) at journal sector \(index) fails its commit checksum"
                break
            }
            var records: [(UInt64, [UInt8])] = []
            var valid = true
            for i in 0..<count {
                let base = FormatConstants.journalEntriesOffset + i * FormatConstants.journalEntrySize
                let home = d.u64(base)
                let image = sector(index + 1 + i)
                guard layout.isJournaledHome(home), let magic = layout.expectedMagic(at: home),
                      case .valid(_, let version)? = try? SectorCodec.open(image, magic: magic, volumeID: volumeID, address: home),
                      version == d.u64(base + 8) else {
                    valid = false
                    break
                }
                records.append((home, image))
            }
            guard valid else {
                scan.damage = "transaction \(sequence) at journal sector \(index) names an invalid home sector"
                break
            }
            scan.transactions.append(Transaction(sequence: sequence, checkpointedThrough: d.u64(48), sector: index,
                                                 records: records))
            scan.checkpointedThrough = max(scan.checkpointedThrough, d.u64(48))
            expected += 1
            index += count + 2
        }
        return scan
    }

    /// Applies every pending transaction of `scan` (oldest first) and flushes the device.
    static func replay(_ scan: Scan, device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64) throws(VMFSError) -> Result {
        var result = Result()
        // The newest image per target address wins; older ones are skipped.
        var newest: [UInt64: (version: UInt64, image: [UInt8])] = [:]
        for transaction in scan.pending {
            result.transactions += 1
            for record in transaction.records {
                let version = SectorCodec.version(of: record.image)
                for target in [record.address] + (layout.mirror(of: record.address).map { [$0] } ?? []) {
                    if let existing = newest[target], existing.version >= version { continue }
                    newest[target] = (version, record.image)
                }
            }
        }
        guard !newest.isEmpty else { return result }
        for (target, candidate) in newest.sorted(by: { $0.key < $1.key }) {
            let home = primary(ofMirror: target, layout: layout)
            let current = try device.read(count: FormatConstants.sectorSize, at: target)
            let magic = layout.expectedMagic(at: home) ?? .descriptor
            let currentVersion: UInt64?
            switch try? SectorCodec.open(current, magic: magic, volumeID: volumeID, address: home) {
            case .pristine?: currentVersion = 0
            case .valid(_, let version)?: currentVersion = version
            case nil: currentVersion = nil
            }
            if let currentVersion, currentVersion >= candidate.version {
                result.sectorsSkipped += 1
                continue
            }
            try device.write(bytes: candidate.image, at: target)
            result.sectorsWritten += 1
        }
        try device.flush()
        return result
    }

    /// The primary address of a sector in a mirror region (identity for other addresses).
    static func primary(ofMirror address: UInt64, layout: VolumeLayout) -> UInt64 {
        let s = UInt64(FormatConstants.sectorSize)
        func map(_ mirror: UInt64, _ primary: UInt64, _ count: UInt64) -> UInt64? {
            address >= mirror && address < mirror + count * s ? address - mirror + primary : nil
        }
        return map(layout.nameTableMirrorOffset, layout.nameTableOffset, UInt64(FormatConstants.nameTableSectors))
            ?? map(layout.descriptorMirrorOffset, layout.descriptorOffset, UInt64(FormatConstants.maxFiles))
            ?? map(layout.pointerMirrorOffset, layout.pointerNodeOffset, UInt64(layout.pointerNodeCount))
            ?? address
    }
}
