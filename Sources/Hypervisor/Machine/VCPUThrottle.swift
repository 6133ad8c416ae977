internal import SystemSupport

/// Auto-converge: holds the vCPUs out of the guest for `percent` of every 10 ms period, so a
/// guest that dirties memory faster than a migration link sends it slows down. Runs on a thread
/// of its own while the percentage is above zero.
final class VCPUThrottle: Sendable {
    /// Length of one hold-and-release cycle.
    static let periodNanoseconds: UInt64 = 10_000_000

    private struct State {
        var percent = 0
        var thread: NativeThread?
        var stopped = false
    }

    private let state = Monitor(State())
    private let control: RunControl

    init(control: RunControl) { self.control = control }

    /// The share of time the vCPUs are held out (0 – 99).
    var percent: Int { state.withLock { $0.percent } }

    /// Sets the share; `hold(true)` must take every vCPU out, `hold(false)` let them back.
    func set(percent: Int, hold: @escaping @Sendable (Bool) -> Void) {
        let clamped = min(99, max(0, percent))
        let start = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            s.percent = clamped
            return clamped > 0 && s.thread == nil
        }
        guard start else { return }
        let thread = try? NativeThread(name: "vmm-throttle") { [self] in run(hold: hold) }
        state.withLock { s in
            if thread == nil { s.percent = 0 } else { s.thread = thread }
        }
    }

    private func run(hold: @Sendable (Bool) -> Void) {
        while true {
            let percent = state.withLock { s -> Int? in
                guard !s.stopped, s.percent > 0 else {
                    s.thread = nil
                    return nil
                }
                return s.percent
            }
            guard let percent else {
                hold(false)
                return
            }
            let held = Self.periodNanoseconds * UInt64(percent) / 100
            hold(true)
            MonotonicClock.sleep(nanoseconds: held)
            hold(false)
            MonotonicClock.sleep(nanoseconds: Self.periodNanoseconds - held)
        }
    }

    /// Ends throttling for good (the machine stops).
    func stop() {
        state.withLock { s in
            s.stopped = true
            s.percent = 0
        }
    }
}
