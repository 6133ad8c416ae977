/// Serializes the read-modify-write of sectors that a write covers only in part.
///
/// A device that moves whole sectors (O_DIRECT, a SCSI LUN) writes an unaligned range by reading
/// its edge sectors, merging and writing them back. Two such writes that share an edge sector —
/// each covering a different part of it — would both read the old sector, and the later one
/// would put back the old bytes of the other: a lost update. Holding the edge sectors for the
/// whole read-merge-write makes the two take turns.
final class EdgeSectorLocks: Sendable {
    private let held = KeyedLocks<UInt64>()

    /// The sectors (of `alignment` bytes) that the writes `ranges` cover only in part, ascending.
    static func edges(of ranges: [(offset: UInt64, count: Int)], alignment: Int) -> [UInt64] {
        let a = UInt64(alignment)
        var sectors: Set<UInt64> = []
        for range in ranges where range.count > 0 {
            let end = range.offset + UInt64(range.count)
            if range.offset % a != 0 { sectors.insert(range.offset / a) }
            if end % a != 0 { sectors.insert(end / a) }
        }
        return sectors.sorted()
    }

    /// Runs `body` holding the edge sectors of `ranges` (taken in ascending order, so two batches
    /// never wait for each other in a cycle).
    func withEdges<T, E: Error>(of ranges: [(offset: UInt64, count: Int)], alignment: Int,
                                _ body: () throws(E) -> T) throws(E) -> T {
        let sectors = Self.edges(of: ranges, alignment: alignment)
        if sectors.isEmpty { return try body() }
        for sector in sectors { held.lock(sector) }
        defer { for sector in sectors { held.unlock(sector) } }
        return try body()
    }
}
