/// Typed, range-checked access to the values of a `.vmx`, with errors that name the file, the
/// key and the value found.
struct VMXFields {
    let file: VMXFile
    let fileName: String

    /// The value of `key`; it must be present and not empty.
    func required(_ key: String) throws(VMError) -> String {
        guard let value = file[key], !value.isEmpty else {
            throw VMError(.malformedConfiguration, "\(fileName): '\(key)' is missing")
        }
        return value
    }

    /// The value of `key` as an integer inside `range`.
    func number<T: FixedWidthInteger>(_ key: String, in range: ClosedRange<T>, unit: String = "") throws(VMError) -> T {
        let text = try required(key)
        guard let value = T(text.trimmedOfWhitespace), range.contains(value) else {
            throw VMError(.malformedConfiguration, "\(fileName): '\(key)' = \(quoted(text)) is not a number in "
                          + "\(range.lowerBound)…\(range.upperBound)\(unit)")
        }
        return value
    }

    /// A value for a message: quoted, and cut short when long (a hostile file can hold a megabyte on one line).
    func quoted(_ value: some CustomStringConvertible) -> String {
        let text = value.description
        return text.count > 40 ? "\"\(text.prefix(40))…\" (\(text.utf8.count) bytes)" : "\"\(text)\""
    }
}
