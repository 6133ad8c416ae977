/// A set of item numbers `0..<count` (blocks, pointer blocks) as one bit each.
struct Bitset: Sendable {
    private(set) var words: [UInt64]

    init(count: UInt64) { words = Array(repeating: 0, count: Int((count + 63) / 64)) }

    func contains(_ i: UInt64) -> Bool {
        let word = Int(i / 64)
        return word < words.count && words[word] & (1 << (i % 64)) != 0
    }

    mutating func insert(_ i: UInt64) {
        let word = Int(i / 64)
        guard word < words.count else { return }
        words[word] |= 1 << (i % 64)
    }
}
