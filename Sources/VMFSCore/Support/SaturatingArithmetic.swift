/// Arithmetic on values read from disk or given by callers, which must never trap: a corrupt
/// counter or a hostile offset saturates instead of crashing the host.
extension UInt64 {
    /// `self + other`, or `UInt64.max` on overflow.
    func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }

    /// `self − other`, or 0 below zero.
    func saturatingSubtract(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }

    /// `self × other`, or `UInt64.max` on overflow.
    func saturatingMultiply(_ other: UInt64) -> UInt64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? .max : product
    }

    /// How many `unit`-sized pieces cover `self` bytes (rounding up), without overflow.
    func pieces(of unit: UInt64) -> UInt64 { self / unit + (self % unit == 0 ? 0 : 1) }
}

/// The end of the byte range `[offset, offset + length)`, or a `fileTooLarge` error when it
/// passes `limit` or overflows.
func rangeEnd(offset: UInt64, length: UInt64, limit: UInt64) throws(VMFSError) -> UInt64 {
    let (end, overflow) = offset.addingReportingOverflow(length)
    guard !overflow, end <= limit else {
        throw VMFSError(.fileTooLarge, "the range at offset \(offset) of \(length) bytes ends past the maximum file size of \(limit) bytes")
    }
    return end
}
