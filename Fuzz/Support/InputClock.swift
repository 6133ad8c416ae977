internal import CVMFSLinux
#if canImport(Glibc)
import Glibc
#endif

/// How long a fuzz input has had: the wall-clock time since it started, less the time its thread
/// spent runnable but waiting for a CPU.
///
/// On a shared machine (two cores, a dozen busy processes, the fuzzer at `nice 10`) an input
/// that needs half a second of CPU takes 10–20 s of wall-clock time, so a wall-clock limit
/// reports hangs that are only starvation. The kernel accounts each thread's run-queue delay
/// (`/proc/thread-self/schedstat`, second field, nanoseconds); what is left of the wall-clock
/// time is time the input ran or waited for something else (a sleep, a lock, a disk): where a
/// hang spends its time.
public struct InputClock: Sendable {
    private let thread: pid_t
    private let startWall: UInt64
    private let startQueued: UInt64

    /// Starts the clock of the calling thread (the one running the input).
    public init() {
        thread = cvmfs_gettid()
        startWall = Self.wallNanoseconds
        startQueued = Self.queuedNanoseconds(of: thread) ?? 0
    }

    /// Nanoseconds the input has had (never more than the wall-clock time).
    public var elapsedNanoseconds: UInt64 {
        let wall = Self.wallNanoseconds - startWall
        guard let queued = Self.queuedNanoseconds(of: thread) else { return wall }
        return wall - min(wall, queued &- startQueued)
    }

    /// Nanoseconds of run-queue delay spent by `thread` of this process so far; nil when the
    /// kernel does not account it (the clock is then the wall clock).
    static func queuedNanoseconds(of thread: pid_t) -> UInt64? {
        let descriptor = open("/proc/self/task/\(thread)/schedstat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 96)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let fields = buffer.prefix(count).split(whereSeparator: { $0 == 0x20 || $0 == 0x0A })
        guard fields.count >= 2 else { return nil }
        return UInt64(String(decoding: fields[1], as: UTF8.self))
    }

    private static var wallNanoseconds: UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
