/// The arithmetic of a file's block map.
///
/// A file's blocks are reached through 952 direct pointers in its descriptor, then a single-,
/// a double- and a triple-indirect pointer block of 1008 entries each:
/// `952 + 1008 + 1008² + 1008³` blocks, beyond 64 TiB at 1 MiB blocks.
public enum BlockMapGeometry {
    static let direct = UInt64(FormatConstants.directPointers)
    static let fanout = UInt64(FormatConstants.pointerEntries)

    /// Blocks reachable from one descriptor.
    public static var reachInBlocks: UInt64 { direct + fanout + fanout * fanout + fanout * fanout * fanout }

    /// The path to a file block: which root pointer, then an index per pointer-block level.
    public enum Path: Equatable, Sendable {
        /// Index into the descriptor's direct pointers.
        case direct(Int)
        /// Root pointer at `depth` (1 single, 2 double, 3 triple) and one index per level, top first.
        case indirect(depth: Int, indices: [Int])
    }

    /// The path to file block `index`, or `nil` past the reach of the map.
    public static func path(forBlock index: UInt64) -> Path? {
        var i = index
        if i < direct { return .direct(Int(i)) }
        i -= direct
        if i < fanout { return .indirect(depth: 1, indices: [Int(i)]) }
        i -= fanout
        if i < fanout * fanout { return .indirect(depth: 2, indices: [Int(i / fanout), Int(i % fanout)]) }
        i -= fanout * fanout
        if i < fanout * fanout * fanout {
            return .indirect(depth: 3, indices: [Int(i / (fanout * fanout)), Int(i / fanout % fanout), Int(i % fanout)])
        }
        return nil
    }

    /// The first file block covered by root `depth` (the inverse of ``path(forBlock:)``).
    static func firstBlock(ofDepth depth: Int) -> UInt64 {
        switch depth {
        case 1: direct
        case 2: direct + fanout
        default: direct + fanout + fanout * fanout
        }
    }

    /// How many file blocks one entry at `level` covers, where level 0 points at data blocks.
    static func span(ofLevel level: Int) -> UInt64 {
        var result: UInt64 = 1
        for _ in 0..<level { result *= fanout }
        return result
    }
}
