/// The fields of every on-disk structure, as `docs/FORMAT.md` documents them: what a
/// structure-aware fuzzer rewrites. Repeated fields (block entries, lock holders, name-table
/// entries, journal records, bitmap bytes) are one ``Span`` each.
public enum DocumentedFields {
    /// One field, or `count` copies of it `stride` bytes apart.
    public struct Span: Sendable {
        public var offset: Int
        public var width: Int
        public var stride: Int = 0
        public var count: Int = 1

        /// The byte offset of element `element` (taken modulo the count).
        public func offset(of element: Int) -> Int { offset + stride * (count > 0 ? element % count : 0) }
    }

    /// Kinds of structure, by their field tables.
    public enum Kind: Int, CaseIterable, Sendable {
        case volumeHeader, heartbeatSlot, lockRecord, nameTable, fileDescriptor, pointerBlock, bitmap,
             journalHeader, journalDescriptor, journalCommit
    }

    private static func field(_ offset: Int, _ width: Int) -> Span { Span(offset: offset, width: width) }
    private static func array(_ offset: Int, _ width: Int, stride: Int, count: Int) -> Span {
        Span(offset: offset, width: width, stride: stride, count: count)
    }

    /// The common sector header's version (§3); magic, checksum, volume ID and self address are
    /// re-sealed by the rewriter, so rewriting them would only test the checksum.
    private static let version = field(24, 8)

    /// The documented fields of `kind`.
    public static func spans(of kind: Kind) -> [Span] {
        switch kind {
        case .volumeHeader:  // §2
            [field(8, 2), field(10, 2), field(16, 8), field(24, 8), array(32, 8, stride: 8, count: 16), field(160, 8),
             field(168, 8), field(176, 4), field(180, 4), field(184, 8), field(192, 4), field(196, 4), field(200, 4),
             field(204, 4), field(208, 4), field(212, 4), field(216, 4), field(220, 4), field(224, 4), field(228, 4),
             field(232, 8), array(240, 8, stride: 8, count: 15), field(360, 8), field(368, 8)]
        case .heartbeatSlot:  // §3a
            [version, field(32, 4), field(36, 4), field(40, 8), field(48, 8), field(56, 8), field(64, 8),
             array(72, 8, stride: 8, count: 8), field(136, 4), field(140, 4), field(144, 4), field(148, 4), field(152, 8),
             field(160, 8), field(168, 8), field(176, 8), field(184, 2), field(192, 8), field(200, 8), field(208, 4)]
        case .lockRecord:  // §4
            [version, field(32, 4), field(36, 2), field(38, 1), field(39, 1), field(40, 4), field(48, 8),
             array(64, 8, stride: 48, count: 32), array(72, 8, stride: 48, count: 32), array(80, 2, stride: 48, count: 32),
             array(88, 8, stride: 48, count: 32), array(96, 8, stride: 48, count: 32), array(104, 4, stride: 48, count: 32)]
        case .nameTable:  // §5
            [version, field(32, 4), array(64, 1, stride: 240, count: 16), array(65, 1, stride: 240, count: 16),
             array(66, 2, stride: 240, count: 16), array(68, 4, stride: 240, count: 16), array(72, 8, stride: 240, count: 16),
             array(80, 1, stride: 240, count: 16), array(81, 8, stride: 240, count: 16), array(80 + 126, 2, stride: 240, count: 16)]
        case .fileDescriptor:  // §6
            [version, field(32, 2), field(34, 2), field(36, 4), field(40, 4), field(44, 4), field(48, 4), field(56, 8),
             field(64, 8), field(72, 8), field(80, 8), field(88, 8), field(96, 8), field(104, 8), field(112, 8),
             field(120, 4), array(128, 8, stride: 8, count: 16), field(256, 4), field(260, 4), field(264, 4),
             array(272, 4, stride: 4, count: 952), array(272, 8, stride: 8, count: 476)]
        case .pointerBlock:  // §7
            [version, field(32, 4), field(36, 2), field(38, 2), field(40, 4), array(64, 4, stride: 4, count: 1008)]
        case .bitmap:  // §8
            [version, field(32, 4), field(36, 4), field(40, 4), field(44, 4), field(48, 8),
             array(64, 1, stride: 1, count: 2048), array(64, 8, stride: 8, count: 256)]
        case .journalHeader:  // §9
            [version, field(32, 4), field(40, 8), field(48, 8), field(56, 8)]
        case .journalDescriptor:  // §9
            [field(32, 8), field(40, 4), field(44, 4), field(48, 8), field(56, 8), field(64, 8),
             array(80, 8, stride: 16, count: 251), array(88, 8, stride: 16, count: 251)]
        case .journalCommit:  // §9
            [field(32, 8), field(40, 4), field(44, 4)]
        }
    }
}
