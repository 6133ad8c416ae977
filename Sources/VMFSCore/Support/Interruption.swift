import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A request to give up waiting: the administrator pressed Ctrl-C or sent SIGTERM.
///
/// Every wait whose length depends on other hosts or on the user — watching heartbeat slots,
/// waiting for a lock, for a replay or for a repair — polls the interruption of its mount or
/// check and stops with ``VMFSError/Code/interrupted`` within about 50 ms of a request. Tools
/// route their stop signals to ``process`` (``installSignalHandlers(_:)``), which mounts and
/// checks use unless given their own instance (tests do, so that one test cannot interrupt
/// another).
public final class Interruption: Sendable {
    private let requested = Atomic<Bool>(false)

    public init() {}

    /// The interruption of this process: what signal handlers set.
    public static let process = Interruption()

    /// Asks every wait that polls this interruption to stop.
    public func request() { requested.store(true, ordering: .releasing) }

    /// True once a stop was requested.
    public var isRequested: Bool { requested.load(ordering: .acquiring) }

    /// Throws ``VMFSError/Code/interrupted`` when a stop was requested; `what` names the wait.
    func check(_ what: @autoclosure () -> String) throws(VMFSError) {
        if isRequested { throw VMFSError(.interrupted, "interrupted while \(what())") }
    }

    /// Sleeps `milliseconds` (in steps of at most 50 ms), stopping early with
    /// ``VMFSError/Code/interrupted`` when a stop is requested.
    func sleep(milliseconds: UInt64, while what: @autoclosure () -> String) throws(VMFSError) {
        var left = milliseconds
        repeat {
            try check(what())
            let step = min(left, 50)
            Clock.sleep(milliseconds: step)
            left -= step
        } while left > 0
        try check(what())
    }

    /// Makes SIGINT, SIGTERM and SIGHUP request ``process``'s interruption. A second signal of
    /// the same kind ends the process as it would have without the handler (for a wait that
    /// does not poll). Call it from the main thread before starting others: the signals are
    /// also unblocked, since a process may inherit them blocked from the one that started it.
    public static func installSignalHandlers() {
        _ = process.isRequested  // initialized before a handler may touch it
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGINT, SIGTERM, SIGHUP] {
            sigaddset(&set, number)
            signal(number) { received in
                Interruption.process.request()
                signal(received, SIG_DFL)
            }
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
