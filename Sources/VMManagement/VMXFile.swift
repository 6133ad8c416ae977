/// A VMware-style `.vmx` configuration: `key = "value"` lines, `#` comments.
///
/// Keys are case-insensitive (as in VMware); values are quoted strings with `|22` escaping a
/// double quote and `|7C` a bar, as VMware writes them.
public struct VMXFile: Sendable, Equatable {
    /// Entries in file order (keys as written).
    public private(set) var entries: [(key: String, value: String)] = []
    /// Position in ``entries`` of each lowercased key, so lookups stay constant-time for large files.
    private var positions: [String: Int] = [:]

    public init() {}

    public static func == (lhs: VMXFile, rhs: VMXFile) -> Bool {
        lhs.entries.map(\.key) == rhs.entries.map(\.key) && lhs.entries.map(\.value) == rhs.entries.map(\.value)
    }

    /// Parses `text`.
    ///
    /// - Throws: ``VMError`` naming the file and line of the first malformed line.
    public init(parsing text: String, fileName: String) throws(VMError) {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmedOfWhitespace.replacing("\r", with: "")
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw VMError(.malformedConfiguration, "\(fileName) line \(index + 1): expected key = \"value\", found '\(line)'")
            }
            let key = line[..<equals].trimmedOfWhitespace
            var value = line[line.index(after: equals)...].trimmedOfWhitespace
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || "._:-".contains($0) }) else {
                throw VMError(.malformedConfiguration, "\(fileName) line \(index + 1): invalid key '\(key)'")
            }
            guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else {
                throw VMError(.malformedConfiguration, "\(fileName) line \(index + 1): the value of '\(key)' must be in double quotes")
            }
            value = String(value.dropFirst().dropLast())
            if value.contains("\"") {
                throw VMError(.malformedConfiguration, "\(fileName) line \(index + 1): unescaped quote in the value of '\(key)'")
            }
            value = value.replacing("|22", with: "\"").replacing("|7C", with: "|")
            if self[key] != nil {
                throw VMError(.malformedConfiguration, "\(fileName) line \(index + 1): '\(key)' is set twice")
            }
            self[key] = value
        }
    }

    /// The value of `key` (case-insensitive).
    public subscript(key: String) -> String? {
        get { positions[key.lowercased()].map { entries[$0].value } }
        set {
            let folded = key.lowercased()
            if let index = positions[folded] {
                if let newValue {
                    entries[index].value = newValue
                } else {
                    entries.remove(at: index)
                    positions = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.key.lowercased(), $0) })
                }
            } else if let newValue {
                positions[folded] = entries.count
                entries.append((key, newValue))
            }
        }
    }

    /// The text of the file.
    public var text: String {
        entries.map { entry in
            let escaped = entry.value.replacing("|", with: "|7C").replacing("\"", with: "|22")
            return "\(entry.key) = \"\(escaped)\""
        }.joined(separator: "\n") + "\n"
    }
}

import FoundationEssentials
