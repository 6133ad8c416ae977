/// Builders for seed inputs, mirroring how ``FuzzInput`` and ``FieldEdit`` read them.
public enum SeedEncoding {
    /// Eight raw little-endian bytes of `value`, read back by ``FuzzInput/extreme(_:)``.
    public static func raw(_ value: UInt64) -> [UInt8] { [0] + little(value) }

    /// ``FuzzInput/boundaries``[`index`] plus `delta`, read back by ``FuzzInput/extreme(_:)``.
    public static func boundary(_ index: Int, delta: Int8 = 0) -> [UInt8] {
        [UInt8(0x60 + index), UInt8(bitPattern: delta)]
    }

    /// The largest 64-bit value, as ``FuzzInput/extreme(_:)`` reads it.
    public static let maximum = boundary(FuzzInput.boundaries.firstIndex(of: .max) ?? 0)

    /// `value` little-endian in its own width.
    public static func little<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    /// A ``FieldEdit`` that sets element `element` of span `span` to `value` (an `extreme` encoding).
    public static func setField(span: Int, element: UInt16 = 0, to value: [UInt8]) -> [UInt8] {
        [UInt8(span)] + little(element) + [2] + value
    }
}
