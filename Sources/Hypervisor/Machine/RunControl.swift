internal import SystemSupport
internal import Synchronization

/// What the vCPUs of a machine are asked to do.
public enum VCPURunState: Sendable, Equatable {
    /// vCPUs enter the guest.
    case running
    /// vCPUs stay out of the guest until resumed; devices keep completing requests.
    case paused
    /// vCPUs leave for good (the machine is powering off).
    case stopping
}

/// The vCPU run state machine: `running` ⇄ `paused` → `stopping`.
///
/// A vCPU thread asks ``awaitRunnable(_:)`` before every `KVM_RUN`. ``pause(vcpus:deadline:)``
/// sets `immediate_exit` on every vCPU under the lock and kicks its thread, then waits until every
/// vCPU is outside the guest. A vCPU parked in the VMM (the test guest's park port) counts as
/// outside. Because `immediate_exit` is only cleared under the same lock, after the vCPU has seen
/// the state it was set for, a kick can never be lost between a check and the next `KVM_RUN`.
final class RunControl: Sendable {
    private struct State {
        var requested: VCPURunState = .running
        /// Incremented by every pause and stop.
        var epoch: UInt64 = 0
        /// vCPUs outside the guest because of the request (waiting here or parked in the VMM).
        var outside = 0
        /// Auto-converge holds the vCPUs out for a slice of every period.
        var throttled = false
    }

    private let state = Monitor(State())
    /// Mirrors `State.epoch` for the lock-free fast path taken on every exit.
    private let epoch = Atomic<UInt64>(0)
    let vcpuCount: Int

    init(vcpuCount: Int) {
        self.vcpuCount = vcpuCount
    }

    /// The state last requested.
    var requested: VCPURunState { state.withLock { $0.requested } }

    /// True while nothing was requested since the vCPU acted on `seenEpoch` (the vCPU may enter the
    /// guest without looking further).
    func isCurrent(_ seenEpoch: UInt64) -> Bool { epoch.load(ordering: .acquiring) == seenEpoch }

    /// Blocks a vCPU thread while the machine is paused. Returns false when it must stop.
    ///
    /// - Parameter seenEpoch: The vCPU thread's own record of the last request it acted on.
    func awaitRunnable(_ vcpu: KVMVCPU, seenEpoch: inout UInt64) -> Bool {
        // Fast path: nothing was requested since this vCPU last looked, so it is running.
        if epoch.load(ordering: .acquiring) == seenEpoch { return true }
        state.withLock { $0.outside += 1 }
        let result = state.wait(for: { $0.requested == .stopping || ($0.requested == .running && !$0.throttled) }) { s -> (Bool, UInt64) in
            s.outside -= 1
            guard s.requested == .running else { return (false, s.epoch) }
            vcpu.setImmediateExit(false)
            return (true, s.epoch)
        }
        guard let (runnable, acknowledged) = result else { return false }
        seenEpoch = acknowledged
        return runnable
    }

    /// Runs `body` (a vCPU blocked in the VMM, e.g. parked) counted as outside the guest.
    func outsideGuest<T>(_ body: () -> T) -> T {
        state.withLock { $0.outside += 1 }
        defer { state.withLock { $0.outside -= 1 } }
        return body()
    }

    /// Asks every vCPU to leave the guest and waits until all have, or `deadline` passes.
    ///
    /// - Parameters:
    ///   - vcpus: The vCPUs and how to kick their threads out of `KVM_RUN`.
    ///   - deadline: `CLOCK_MONOTONIC` nanoseconds.
    /// - Returns: True when every vCPU is outside the guest.
    func pause(vcpus: [(vcpu: KVMVCPU, kick: () -> Void)], deadline: UInt64) -> Bool {
        state.withLock { s in
            guard s.requested == .running else { return }
            s.requested = .paused
            s.epoch &+= 1
            epoch.store(s.epoch, ordering: .releasing)
            for entry in vcpus { entry.vcpu.setImmediateExit(true) }
        }
        for entry in vcpus { entry.kick() }
        return state.wait(until: deadline, for: { $0.requested != .paused || $0.outside >= self.vcpuCount }) { _ in true } ?? false
    }

    /// Holds every vCPU out of the guest (`true`, kicking them with `kicks`) or lets them back
    /// in: the auto-converge throttle. Independent of pause: a paused machine stays paused.
    func setThrottled(_ throttled: Bool, vcpus: [(vcpu: KVMVCPU, kick: () -> Void)]) {
        state.withLock { s in
            guard s.throttled != throttled else { return }
            s.throttled = throttled
            guard throttled, s.requested == .running else { return }
            s.epoch &+= 1
            epoch.store(s.epoch, ordering: .releasing)
            for entry in vcpus { entry.vcpu.setImmediateExit(true) }
        }
        if throttled { for entry in vcpus { entry.kick() } }
    }

    /// Lets paused vCPUs enter the guest again.
    func resume() {
        state.withLock { s in
            if s.requested == .paused { s.requested = .running }
        }
    }

    /// Makes every vCPU leave for good (after which the caller kicks the threads).
    func stop(vcpus: [KVMVCPU]) {
        state.withLock { s in
            s.requested = .stopping
            s.epoch &+= 1
            epoch.store(s.epoch, ordering: .releasing)
            for vcpu in vcpus { vcpu.setImmediateExit(true) }
        }
    }
}
