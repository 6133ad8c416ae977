import FoundationEssentials
import Glibc
public import ArgumentParser
import VMFSCore

/// Output helpers shared by the command-line tools.
public enum ToolOutput {
    /// Writes a line to standard error.
    public static func error(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        var offset = 0
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            while offset < buffer.count {
                let written = write(2, base + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// Writes a value as pretty-printed, key-sorted JSON to standard output.
    public static func json<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) {
            print(text)
        }
    }

    /// Prints `error` as `tool: error: …` on standard error and exits with `code`.
    public static func fail(_ tool: String, _ error: any Error, code: Int32 = 1) -> Never {
        Self.error("\(tool): error: \(describe(error))")
        exit(code)
    }

    /// Prints `error` as `tool: error: …` on standard error and returns the exit code to throw,
    /// so that `defer` blocks (unmounting the volume) still run.
    public static func failure(_ tool: String, _ error: any Error, code: Int32 = 1) -> ExitCode {
        Self.error("\(tool): error: \(describe(error))")
        return ExitCode(code)
    }

    /// The text of an error for the terminal: names it carries (read from a volume, a .vmx, the
    /// command line) have their control characters escaped.
    private static func describe(_ error: any Error) -> String {
        "\(error)".escapingControlCharacters
    }

    /// True when standard error is a terminal (for progress indicators).
    public static var stderrIsTerminal: Bool { isatty(2) != 0 }

    /// Formats a wall-clock time in nanoseconds.
    public static func time(_ nanoseconds: Int64) -> String { formatWallTime(nanoseconds) }
}

/// Rows of text in aligned columns.
public struct TextTable {
    private var rows: [[String]]

    public init(header: [String]) { rows = [header] }

    public mutating func add(_ row: [String]) { rows.append(row) }

    public func render() -> String {
        guard let first = rows.first else { return "" }
        var widths = Array(repeating: 0, count: first.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[i] - cell.count))
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
