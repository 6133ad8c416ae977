internal import CKVM
internal import Synchronization

/// The pages of guest memory the VMM itself wrote (device emulation: disk reads landing in guest
/// buffers, used rings, status bytes), which KVM's dirty log never sees because they go through
/// the host mapping. One bit per 4 KiB page of the host mapping, set atomically by any thread.
///
/// Marks are recorded only while tracking is on, so the cost outside a migration is one atomic
/// load per write. A writer marks a page *after* writing it: a collector that takes the bit
/// before the write lands then finds it set again in its next round.
final class DirtyPageBitmap: @unchecked Sendable {
    let pageCount: Int
    private let words: UnsafeMutablePointer<UInt64>
    private let wordCount: Int
    private let tracking = Atomic<Bool>(false)

    init(pageCount: Int) {
        self.pageCount = pageCount
        wordCount = max(1, (pageCount + 63) / 64)
        words = .allocate(capacity: wordCount)
        words.initialize(repeating: 0, count: wordCount)
    }

    deinit { words.deallocate() }

    var isTracking: Bool { tracking.load(ordering: .acquiring) }

    /// Starts (clearing what was marked before) or stops recording.
    func setTracking(_ on: Bool) {
        if on { for index in 0..<wordCount { _ = ckvm_atomic_take64(words + index) } }
        tracking.store(on, ordering: .releasing)
    }

    /// Marks pages `first ..< first + count` (host-mapping page numbers).
    func mark(firstPage first: Int, count: Int) {
        guard isTracking, count > 0, first >= 0, first < pageCount else { return }
        let end = min(pageCount, first + count)
        var page = first
        while page < end {
            let word = page / 64
            let bit = page % 64
            let span = min(64 - bit, end - page)
            let bits = span == 64 ? UInt64.max : ((UInt64(1) << UInt64(span)) - 1) << UInt64(bit)
            ckvm_atomic_or64(words + word, bits)
            page += span
        }
    }

    /// Takes (and clears) the marks of words `range`, ORing them into `into` from its index 0.
    func take(words range: Range<Int>, into bitmap: inout [UInt64]) {
        for (offset, index) in range.enumerated() where index < wordCount && offset < bitmap.count {
            bitmap[offset] |= ckvm_atomic_take64(words + index)
        }
    }
}
