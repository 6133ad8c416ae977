internal import SystemSupport

/// Lets a device's own threads touch guest memory only while the device is armed, and lets the
/// transport (reset) and the VM (pause) wait until they no longer do.
///
/// Every disarm for a reset starts a new generation: work a thread took before it (chains of
/// rings the driver has since reset) must be thrown away, never completed.
final class DeviceActivityGate: Sendable {
    private struct State {
        var driverReady = false
        var paused = false
        var stopped = false
        var generation: UInt64 = 0
        var busy = 0
    }

    private let state = Monitor(State())

    /// Enters a stretch of guest-memory work; returns the generation, or nil while disarmed.
    func enter() -> UInt64? {
        state.withLock { s in
            guard s.driverReady, !s.paused, !s.stopped else { return nil }
            s.busy += 1
            return s.generation
        }
    }

    func leave() { state.withLock { $0.busy -= 1 } }

    /// Runs `body` inside the gate; nil (without running it) while disarmed.
    func run<T>(_ body: (UInt64) -> T) -> T? {
        guard let generation = enter() else { return nil }
        defer { leave() }
        return body(generation)
    }

    var isArmed: Bool { state.withLock { $0.driverReady && !$0.paused && !$0.stopped } }
    var generation: UInt64 { state.withLock { $0.generation } }

    /// The driver is ready (DRIVER_OK) or gone (reset: a new generation, after the current work).
    func setDriverReady(_ ready: Bool) {
        state.withLock { s in
            if !ready && s.driverReady { s.generation &+= 1 }
            s.driverReady = ready
        }
        if !ready { waitIdle() }
    }

    /// Before a reset: disarms and waits until no thread is inside.
    func quiesce() { setDriverReady(false) }

    /// The VM paused (no new work; the current finishes first) or resumed.
    func setPaused(_ paused: Bool) {
        state.withLock { $0.paused = paused }
        if paused { waitIdle() }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        waitIdle()
    }

    private func waitIdle() { _ = state.wait(for: { $0.busy == 0 }) { _ in true } }
}
