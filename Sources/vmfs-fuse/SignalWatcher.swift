internal import CFuse
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// Turns SIGTERM, SIGINT and SIGHUP into a clean stop: while mounting, giving up the mount;
/// while serving, a clean unmount.
///
/// The signals are blocked in every thread (the mask is set before any thread exists, so the
/// volume's heartbeat threads and the FUSE workers inherit it) and taken by one thread with
/// `sigwait`, started before the volume is mounted. On the first signal it runs the current
/// stop action (``onStop(_:)``), then wakes the main thread, which waits in `sem_wait` inside
/// `fuse_session_loop_mt`, with SIGUSR1 — the only signal the main thread takes. Whichever
/// thread a signal is sent to, the daemon stops; libfuse's own handlers could run on a
/// heartbeat thread and leave the loop asleep.
enum SignalWatcher {
    static let stopSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP]
    static let wakeSignal = SIGUSR1
    private static let action = Mutex<(@Sendable (Int32) -> Void)?>(nil)
    private static let received = Atomic<Int32>(0)

    /// Makes `stop` what the first stop signal does; if one has arrived already, runs it now.
    static func onStop(_ stop: @escaping @Sendable (Int32) -> Void) {
        let signal = action.withLock { current -> Int32 in
            current = stop
            return received.load(ordering: .acquiring)
        }
        if signal != 0 { stop(signal) }
    }

    /// The stop signal received so far, if any.
    static var receivedSignal: Int32? {
        let signal = received.load(ordering: .acquiring)
        return signal == 0 ? nil : signal
    }

    /// Blocks the stop signals and the wake signal in the calling thread (call first thing in
    /// `main`, so every later thread inherits the mask) and ignores SIGPIPE.
    static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in stopSignals + [wakeSignal] { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        _ = cfuse_ignore_signal(SIGPIPE)
        _ = cfuse_install_wakeup_handler(wakeSignal)
    }

    /// Lets the calling (main) thread take the wake signal: call right before the session loop.
    static func acceptWakeups() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, wakeSignal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Starts the watcher thread. The stop action runs once, on the first stop signal; afterwards
    /// the main thread is sent the wake signal until `loopFinished` says the loop returned.
    static func start(mainThread: pthread_t, loopFinished: @escaping @Sendable () -> Bool) {
        let target = ThreadReference(thread: mainThread)
        NativeThread.start {
            var set = sigset_t()
            sigemptyset(&set)
            for signal in stopSignals { sigaddset(&set, signal) }
            var signal: Int32 = 0
            while sigwait(&set, &signal) != 0 {}
            // Recorded under the action's lock, so that an action set meanwhile runs exactly once.
            let stop = action.withLock { current -> (@Sendable (Int32) -> Void)? in
                received.store(signal, ordering: .releasing)
                return current
            }
            stop?(signal)
            // The main thread may be between its "exited?" check and sem_wait: repeat the wakeup.
            while !loopFinished() {
                pthread_kill(target.thread, wakeSignal)
                usleep(50_000)
            }
        }
    }

    /// A `pthread_t` handed to the watcher thread (a plain integer on Linux).
    private struct ThreadReference: @unchecked Sendable {
        let thread: pthread_t
    }
}
