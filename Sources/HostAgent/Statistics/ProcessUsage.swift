internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// CPU time and resident memory of a process, read from `/proc/PID/stat` and `/proc/PID/statm`.
enum ProcessUsage {
    static let ticksPerSecond = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
    static let pageSize = UInt64(max(1, sysconf(Int32(_SC_PAGESIZE))))

    static func read(pid: Int32) -> (cpuNanoseconds: UInt64, residentBytes: UInt64)? {
        guard let stat = text("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        let cpu = (user + system) * 1_000_000_000 / ticksPerSecond
        guard let statm = text("/proc/\(pid)/statm") else { return nil }
        let pages = statm.split(separator: " ")
        guard pages.count > 1, let resident = UInt64(pages[1]) else { return nil }
        return (cpu, resident * pageSize)
    }

    static func text(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }
}
