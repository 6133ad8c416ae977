public import VMFSCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Interrupts one fuzz input after a time budget, the way an administrator's Ctrl-C would.
///
/// Mounts and checks wait on other hosts for as long as the (bounded) intervals published on
/// disk say, which can be tens of seconds. Every such wait must poll its ``Interruption``; the
/// watchdog requests it after ``budgetMilliseconds``, so an input that still runs past
/// libFuzzer's `-timeout` (10 s) is a wait that does not poll: a real hang.
public enum Watchdog {
    /// How long an input may run before its interruption is requested: 3 s, or
    /// `$VMFS_FUZZ_BUDGET_MS` (a short budget interrupts inputs at every step, which is how the
    /// stop paths are fuzzed).
    public static let budgetMilliseconds: UInt64 = {
        guard let text = getenv("VMFS_FUZZ_BUDGET_MS"), let value = UInt64(String(cString: text)) else { return 3000 }
        return value
    }()

    private struct Armed {
        var interruption: Interruption
        var deadline: UInt64
    }

    private static let armed = Mutex<Armed?>(nil)
    private static let started = Atomic<Bool>(false)

    /// A fresh interruption that is requested once the budget has passed (until ``disarm()``).
    public static func arm() -> Interruption {
        startOnce()
        let interruption = Interruption()
        armed.withLock { $0 = Armed(interruption: interruption, deadline: now + budgetMilliseconds * 1_000_000) }
        return interruption
    }

    /// Stops watching the current input.
    public static func disarm() { armed.withLock { $0 = nil } }

    private static var now: UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    private static func startOnce() {
        guard started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { _ in
            while true {
                usleep(20_000)
                let due = Watchdog.armed.withLock { armed -> Interruption? in
                    guard let current = armed, Watchdog.now >= current.deadline else { return nil }
                    armed = nil
                    return current.interruption
                }
                due?.request()
            }
        }, nil)
        guard result == 0 else { fatalError("cannot start the watchdog thread: \(result)") }
        pthread_detach(thread)
    }
}
