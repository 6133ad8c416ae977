import Testing
import VMFSTestSupport

/// The checker the iSCSI cluster tests run over recorded lock histories must itself find what it
/// looks for: overlapping holds, repeated counter values and malformed lines.
@Suite("Lock history checker")
struct LockHistoryTests {
    @Test func findsOverlappingHoldsAndRepeatedValues() {
        let clean = LockHistory(text: """
            HOLD a 100 200 1
            HOLD b 201 300 2
            HOLD c 300 300 3
            HOLD a 301 400 4
            """)
        #expect(clean.malformed.isEmpty)
        #expect(clean.holds.count == 4)
        #expect(clean.overlaps().isEmpty)
        #expect(clean.repeatedValues().isEmpty)

        let overlapping = LockHistory(text: """
            HOLD a 100 200 1
            HOLD b 150 250 1
            HOLD c 260 270 2
            HOLD d 10 1000 3
            """)
        let found = overlapping.overlaps()
        #expect(found.count == 4, "\(found)")
        #expect(found.contains { $0.first.host == "a" && $0.second.host == "b" })
        #expect(!found.contains { Set([$0.first.host, $0.second.host]) == ["a", "c"] })
        #expect(overlapping.repeatedValues() == [1])

        let damaged = LockHistory(text: "HOLD a 300 200 1\nHOLD b x 5 6\nnoise\n")
        #expect(damaged.holds.isEmpty)
        #expect(damaged.malformed.count == 3)
    }
}
