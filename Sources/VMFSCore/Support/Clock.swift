internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// Time sources. Liveness is judged on the monotonic clock only; wall-clock time is stored on disk
/// for display ("locked since …"), never compared across hosts.
enum Clock {
    /// Nanoseconds on this host's monotonic clock.
    static var monotonicNanoseconds: UInt64 { cvmfs_monotonic_ns() }

    /// Nanoseconds since the Unix epoch on this host's wall clock.
    static var wallNanoseconds: Int64 { cvmfs_realtime_ns() }

    /// Sleeps the calling thread.
    static func sleep(milliseconds: UInt64) {
        var request = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int((milliseconds % 1000) * 1_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// Sleeps the calling thread.
    static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}

/// Formats a wall-clock time (nanoseconds since the epoch) as `YYYY-MM-DD HH:MM:SS UTC`.
public func formatWallTime(_ nanoseconds: Int64) -> String {
    var seconds = time_t(nanoseconds / 1_000_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) "
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
}
