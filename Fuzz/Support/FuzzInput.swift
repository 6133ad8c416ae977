/// A cursor over a fuzzer's input bytes that never fails: past the end every value reads as
/// zero, so a harness can decode a structured input of any length.
///
/// Harnesses read "which structure, which field, what value" from it. ``extreme(_:)`` biases
/// numbers towards the boundaries where arithmetic on values from disk or a guest goes wrong.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Copies `size` bytes at `data` (what `LLVMFuzzerTestOneInput` receives).
    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        self.init(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    }

    /// True when every byte has been read.
    public var isEmpty: Bool { position >= bytes.count }

    /// Bytes not read yet.
    public var remainingCount: Int { max(bytes.count - position, 0) }

    /// The next byte (0 past the end).
    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The next little-endian integer of `T`'s width.
    public mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        var value = T.zero
        for i in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: byte()) << (8 * i) }
        return value
    }

    /// The next `count` bytes (zero-padded past the end).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<max(count, 0)).map { _ in byte() }
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] {
        defer { position = bytes.count }
        return position < bytes.count ? Array(bytes[position...]) : []
    }

    /// A value in `0..<count` (0 when `count` is 0).
    public mutating func index(_ count: Int) -> Int {
        count > 0 ? Int(integer(UInt16.self)) % count : 0
    }

    /// A boolean from one byte.
    public mutating func flag() -> Bool { byte() & 1 != 0 }

    /// A 64-bit value: one selector byte picks either a boundary value (sometimes offset by a
    /// small delta) or eight raw bytes, so both edges and arbitrary values are reached.
    public mutating func extreme(_: UInt64.Type = UInt64.self) -> UInt64 {
        let selector = byte()
        switch selector {
        case 0..<0x60:
            return integer(UInt64.self)
        case 0x60..<0xC0:
            let base = Self.boundaries[Int(selector - 0x60) % Self.boundaries.count]
            let delta = Int64(Int8(bitPattern: byte()))
            return delta >= 0 ? base &+ UInt64(delta) : base &- UInt64(-delta)
        default:
            return UInt64(integer(UInt16.self))
        }
    }

    /// Values near which sizes, offsets and counts overflow or change meaning.
    public static let boundaries: [UInt64] = [
        0, 1, 511, 512, 4095, 4096, 1 << 16, 1 << 20, 1 << 21, 1 << 30, 1 << 31, 1 << 32, 1 << 40,
        952 << 20, 1960 << 20, 1 << 47, 1 << 48, 1 << 55, 1 << 62, UInt64(Int64.max), 1 << 63, UInt64.max,
        UInt64(UInt32.max), UInt64(UInt16.max), UInt64(Int32.max),
    ]
}
