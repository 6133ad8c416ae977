extension StringProtocol {
    /// The text with every control character written as an escape (`\n`, `\t`, `\x1b`, `\u{85}`)
    /// and backslashes doubled, so that a name read from a volume cannot split a line, move the
    /// cursor, change the terminal or reorder the text around it (line and paragraph separators,
    /// bidirectional overrides) when a tool prints it.
    public var escapingControlCharacters: String {
        var result = ""
        result.reserveCapacity(utf8.count)
        for scalar in unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                let value = scalar.value
                if value < 0x20 || value == 0x7F {
                    result += "\\x" + (value < 0x10 ? "0" : "") + String(value, radix: 16)
                } else if (0x80...0x9F).contains(value) || (0x2028...0x202E).contains(value) || (0x2066...0x2069).contains(value) {
                    result += "\\u{" + String(value, radix: 16) + "}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result
    }
}
