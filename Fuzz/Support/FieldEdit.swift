/// One change to one documented field, decoded from fuzz input: which field (a ``DocumentedFields/Span``
/// and an element of it), and how to change it.
public struct FieldEdit: Sendable, CustomStringConvertible {
    /// How the new value is made.
    public enum Change: Sendable {
        /// Replace the field (truncated to its width).
        case set(UInt64)
        /// Add a small signed amount (wrapping at the field's width).
        case add(Int64)
        /// Flip one bit.
        case flipBit(Int)
    }

    public var offset: Int
    public var width: Int
    public var change: Change

    /// Reads an edit of a field of `kind` from `input`.
    public init(kind: DocumentedFields.Kind, from input: inout FuzzInput) {
        let spans = DocumentedFields.spans(of: kind)
        let span = spans[Int(input.byte()) % spans.count]
        offset = span.offset(of: Int(input.integer(UInt16.self)))
        width = span.width
        switch input.byte() % 4 {
        case 0: change = .add(Int64(Int8(bitPattern: input.byte())))
        case 1: change = .flipBit(Int(input.byte()) % (span.width * 8))
        default: change = .set(input.extreme())
        }
    }

    public var description: String { "+\(offset) (\(width) bytes): \(change)" }

    /// Applies the edit to a sector image.
    public func apply(to bytes: inout [UInt8]) {
        guard offset + width <= bytes.count else { return }
        let mask: UInt64 = width == 8 ? .max : (1 << UInt64(8 * width)) - 1
        let old = (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
        let new: UInt64 = switch change {
        case .set(let value): value
        case .add(let delta): delta >= 0 ? old &+ UInt64(delta) : old &- UInt64(-delta)
        case .flipBit(let bit): old ^ (1 << UInt64(bit))
        }
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: (new & mask) >> (8 * UInt64(i))) }
    }
}
