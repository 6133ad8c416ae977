import FuzzSupport

/// Seeds: an empty journal, then journals of one to three committed transactions whose records
/// rewrite descriptors, the name table, bitmaps and pointer blocks with newer versions, some with
/// an edited field (see JournalBuilder for the encoding).
enum JournalSeeds {
    static func make() -> [(name: String, bytes: [UInt8])] {
        typealias E = SeedEncoding
        let header: [UInt8] = [0, 0, 1]  // flags, start sequence 1, header version 1
        /// A record: home choice, edit count and edits, version increment.
        func record(_ home: UInt8, edits: [[UInt8]] = []) -> [UInt8] { [home, UInt8(edits.count)] + edits.flatMap { $0 } + [1] }
        /// A transaction: flags 0 (expected sequence), checkpointed = sequence − 1, records, generation 1.
        func transaction(_ records: [[UInt8]]) -> [UInt8] { [0, 1, UInt8(records.count)] + records.flatMap { $0 } + E.boundary(1) }
        let sizeToMaximum = E.setField(span: 7, to: E.maximum)       // descriptor size
        let firstEntryRaw = E.setField(span: 20, to: E.raw(0x7FFF_FFFF))  // first direct block entry
        return [
            ("empty", header + [0]),
            ("one-record", header + [1] + transaction([record(0)])),
            ("three-records", header + [1] + transaction([record(1), record(2), record(3)])),
            ("two-transactions", header + [2] + transaction([record(0)]) + transaction([record(4), record(5)])),
            ("hostile-size", header + [1] + transaction([record(1, edits: [sizeToMaximum])])),
            ("hostile-entry", header + [2] + transaction([record(2, edits: [firstEntryRaw])]) + transaction([record(6), record(7)])),
        ]
    }
}
