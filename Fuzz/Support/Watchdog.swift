public import VMFSCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Interrupts one fuzz input after a time budget, the way an administrator's Ctrl-C would, and
/// reports it as a hang when it still runs long after.
///
/// Mounts and checks wait on other hosts for as long as the (bounded) intervals published on
/// disk say, which can be tens of seconds. Every such wait must poll its ``Interruption``; the
/// watchdog requests it after ``budgetMilliseconds``, and an input that still runs
/// ``hangMilliseconds`` (10 s) after its start is a wait that does not poll (or a loop that
/// never ends): the watchdog stops the process with a "fuzz hang" report, and libFuzzer keeps
/// the input. Both are measured on the input's ``InputClock``, which leaves out the time the
/// input waited for a CPU, so a starved fuzzer on a busy machine reports no false hangs.
public enum Watchdog {
    /// How long an input may run before its interruption is requested: 3 s, or
    /// `$VMFS_FUZZ_BUDGET_MS` (a short budget interrupts inputs at every step, which is how the
    /// stop paths are fuzzed).
    public static let budgetMilliseconds: UInt64 = {
        guard let text = getenv("VMFS_FUZZ_BUDGET_MS"), let value = UInt64(String(cString: text)) else { return 3000 }
        return value
    }()
    /// How long an input may run at all: 10 s, or `$VMFS_FUZZ_HANG_MS` (a short limit shows the
    /// detection at work: every input becomes a hang).
    public static let hangMilliseconds: UInt64 = {
        guard let text = getenv("VMFS_FUZZ_HANG_MS"), let value = UInt64(String(cString: text)) else { return 10_000 }
        return value
    }()

    private struct Armed {
        var interruption: Interruption
        var clock: InputClock
        var requested = false
    }

    private static let armed = Mutex<Armed?>(nil)
    private static let started = Atomic<Bool>(false)

    /// A fresh interruption that is requested once the budget has passed (until ``disarm()``).
    /// Call it on the thread that runs the input.
    public static func arm() -> Interruption {
        startOnce()
        let interruption = Interruption()
        armed.withLock { $0 = Armed(interruption: interruption, clock: InputClock()) }
        return interruption
    }

    /// Stops watching the current input.
    public static func disarm() { armed.withLock { $0 = nil } }

    /// Requests the interruption once the budget has passed; stops the process once the hang
    /// limit has.
    private static func check() {
        let due = armed.withLock { armed -> Interruption? in
            guard var current = armed else { return nil }
            let elapsed = current.clock.elapsedNanoseconds / 1_000_000
            if elapsed >= hangMilliseconds {
                fatalError("fuzz hang: the input has run \(elapsed) ms (not counting time waiting for a CPU); "
                           + "its interruption was requested at \(budgetMilliseconds) ms")
            }
            guard !current.requested, elapsed >= budgetMilliseconds else { return nil }
            current.requested = true
            armed = current
            return current.interruption
        }
        due?.request()
    }

    private static func startOnce() {
        guard started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { _ in
            while true {
                usleep(20_000)
                Watchdog.check()
            }
        }, nil)
        guard result == 0 else { fatalError("cannot start the watchdog thread: \(result)") }
        pthread_detach(thread)
    }
}
