#if canImport(Glibc)
internal import Glibc
#endif

/// `CLOCK_MONOTONIC`, which every process of the host shares: deadlines handed from one process
/// to another (VM leases) are compared on it.
public enum MonotonicClock {
    /// Nanoseconds on the host's monotonic clock.
    public static var nanoseconds: UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Nanoseconds since the Unix epoch on the wall clock (for display and records, never for
    /// comparing times across hosts).
    public static var wallNanoseconds: Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// Sleeps the calling thread for `nanoseconds`, resuming after signals.
    public static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// Sleeps the calling thread for `milliseconds`.
    public static func sleep(milliseconds: UInt64) { sleep(nanoseconds: milliseconds * 1_000_000) }
}
