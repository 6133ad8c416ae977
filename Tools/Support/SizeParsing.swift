/// Parses sizes such as `64T`, `512M`, `1G`, `4096`, `1.5G` (binary units: K = 1024).
public func parseSize(_ text: String) -> UInt64? {
    let trimmed = text.trimmedOfWhitespace.uppercased()
    guard let last = trimmed.last else { return nil }
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50]
    var number = trimmed
    var multiplier: UInt64 = 1
    if last == "B" { number.removeLast() }
    if let unitChar = number.last, let unit = units[unitChar] {
        multiplier = unit
        number.removeLast()
        if number.hasSuffix("I") { number.removeLast() }
    }
    if let whole = UInt64(number) {
        let (value, overflow) = whole.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : value
    }
    if let fraction = Double(number), fraction >= 0 {
        let value = fraction * Double(multiplier)
        return value < Double(UInt64.max) ? UInt64(value) : nil
    }
    return nil
}

/// Formats a byte count with a binary unit (`1.5 GiB`).
public func formatSize(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) B" }
    let rounded = (value * 10).rounded() / 10
    return rounded == rounded.rounded() ? "\(Int(rounded)) \(units[unit])" : "\(rounded) \(units[unit])"
}



extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    public var trimmedOfWhitespace: String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isBlank($0) }), let last = lastIndex(where: { !isBlank($0) }) else { return "" }
        return String(self[first...last])
    }
}
