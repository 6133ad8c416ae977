/// The records the test guest's `diskSequence` workload leaves on its disk (layout in
/// `Tools/guest/sequence.c`), and the checks that prove one VM never ran twice.
public struct SequenceLog: Sendable, Equatable {
    public struct Record: Sendable, Equatable {
        public var boot: UInt64
        public var nonce: UInt64
        public var sequence: UInt64
        /// The machine's restore count when the guest wrote it (grows with every migration).
        public var epoch: UInt64 = 0
    }

    /// The boot record: the newest boot's number and nonce.
    public var boots: UInt64
    public var bootNonce: UInt64
    /// Every valid record in the ring, by sequence number.
    public var records: [Record]
    /// Ring slots whose content is neither empty nor a valid record.
    public var corruptSlots: [Int]

    static func word(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    static func mix64(_ value: UInt64) -> UInt64 {
        var x = value &+ 0x9e37_79b9_7f4a_7c15
        x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
        x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
        return x ^ (x >> 31)
    }

    static func check(_ words: [UInt64]) -> UInt64 {
        words.reduce(UInt64(0x5eed5eed)) { mix64($0 ^ $1) }
    }

    /// Parses the first `(1 + ring) × 512` bytes of a disk.
    public init(disk: [UInt8], ring: Int = 1024) {
        let bootWords = (0..<6).map { disk.count >= 48 ? Self.word(disk, $0 * 8) : 0 }
        let bootValid = UInt32(truncatingIfNeeded: bootWords[0]) == 0x544f_4f42 && Self.check(Array(bootWords[0..<5])) == bootWords[5]
        boots = bootValid ? bootWords[1] : 0
        bootNonce = bootValid ? bootWords[2] : 0
        var records: [Record] = []
        var corrupt: [Int] = []
        for slot in 0..<ring {
            let base = (1 + slot) * 512
            guard base + 56 <= disk.count else { break }
            let words = (0..<7).map { Self.word(disk, base + $0 * 8) }
            if words.allSatisfy({ $0 == 0 }) { continue }
            guard UInt32(truncatingIfNeeded: words[0]) == 0x5251_4553, Self.check(Array(words[0..<6])) == words[6],
                  Int(words[3] % UInt64(ring)) == slot else {
                corrupt.append(slot)
                continue
            }
            records.append(Record(boot: words[1], nonce: words[2], sequence: words[3], epoch: words[5]))
        }
        self.records = records.sorted { $0.sequence < $1.sequence }
        corruptSlots = corrupt
    }

    /// The epochs (migrations) seen in the ring, in sequence order.
    public var epochs: [UInt64] {
        var seen: [UInt64] = []
        for record in records where record.boot == boots && seen.last != record.epoch { seen.append(record.epoch) }
        return seen
    }

    /// The highest sequence number written (nil when none).
    public var lastSequence: UInt64? { records.last?.sequence }

    /// What proves a double run or lost writes, as sentences; empty when the log is consistent:
    /// no corrupt slot, one nonce per boot, boots never decreasing along the sequence, and the
    /// newest boot's records contiguous.
    public var problems: [String] {
        var found: [String] = []
        if !corruptSlots.isEmpty { found.append("corrupt ring slots \(corruptSlots.prefix(8))") }
        var nonces: [UInt64: Set<UInt64>] = [:]
        for record in records { nonces[record.boot, default: []].insert(record.nonce) }
        for (boot, set) in nonces where set.count > 1 {
            found.append("boot \(boot) ran as \(set.count) instances at once (nonces \(set.sorted()))")
        }
        for (earlier, later) in zip(records, records.dropFirst()) where later.boot < earlier.boot {
            found.append("seq \(later.sequence) was written by boot \(later.boot) after boot \(earlier.boot) wrote seq \(earlier.sequence)")
            break
        }
        let newest = records.filter { $0.boot == boots }
        for (a, b) in zip(newest, newest.dropFirst()) where b.sequence != a.sequence + 1 {
            found.append("boot \(boots) skipped from seq \(a.sequence) to \(b.sequence)")
            break
        }
        // A migrated VM's epoch only grows along the sequence: an older epoch after a newer one
        // is a record the previous host wrote after it handed the VM over.
        for (a, b) in zip(records, records.dropFirst()) where a.boot == b.boot && b.epoch < a.epoch {
            found.append("seq \(b.sequence) was written in epoch \(b.epoch) after seq \(a.sequence) of epoch \(a.epoch): the old host wrote after the handoff")
            break
        }
        return found
    }
}
