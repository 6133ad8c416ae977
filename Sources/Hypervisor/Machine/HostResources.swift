#if canImport(Glibc)
internal import Glibc
#endif

/// What the host can give a VM.
enum HostResources {
    /// Memory the host can hand out now without swapping others out: MemAvailable + SwapFree.
    static func availableMemoryBytes() -> UInt64? {
        guard let file = fopen("/proc/meminfo", "re") else { return nil }
        defer { fclose(file) }
        var available: UInt64?
        var swapFree: UInt64 = 0
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let parts = text.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "\n" })
            guard parts.count >= 2, let kibibytes = UInt64(parts[1]) else { continue }
            if parts[0] == "MemAvailable" { available = kibibytes * 1024 }
            if parts[0] == "SwapFree" { swapFree = kibibytes * 1024 }
        }
        return available.map { $0 + swapFree }
    }
}
