internal import Synchronization
internal import Dispatch
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// Why a virtual machine stopped running.
public enum PowerOffReason: Sendable, Equatable, CustomStringConvertible {
    /// The guest wrote `status` to the test-exit port (``TestGuestABI/exitPort``); 0 means success.
    case guestPoweredOff(status: UInt32)
    /// The guest reset the machine (i8042 command 0xFE, triple fault, or a reset system event).
    case reset
    /// ``VirtualMachine/requestStop()`` was called.
    case stopRequested
    /// The time limit given to ``VirtualMachine/run(timeLimit:)`` expired.
    case timedOut
    /// A vCPU hit an exit the VMM cannot continue from (for example an emulation failure).
    case vcpuFailure(vcpu: Int, description: String)

    public var description: String {
        switch self {
        case .guestPoweredOff(let status): "guest powered off with status \(status)"
        case .reset: "guest reset"
        case .stopRequested: "stop requested"
        case .timedOut: "time limit expired"
        case .vcpuFailure(let vcpu, let description): "vCPU \(vcpu) failed: \(description)"
        }
    }
}

/// A progress marker the guest wrote to ``TestGuestABI/markerPort``, with the host time it arrived.
public struct GuestMarker: Sendable, Equatable {
    /// The 32-bit code the guest wrote.
    public var code: UInt32
    /// The vCPU that wrote it.
    public var vcpu: Int
    /// `CLOCK_MONOTONIC` nanoseconds when the VMM saw the write.
    public var monotonicNanoseconds: UInt64
    /// `CLOCK_REALTIME` nanoseconds since the epoch when the VMM saw the write.
    public var realtimeNanoseconds: Int64
}

/// The machine's power state: the first power-off request wins and wakes whoever waits for it.
final class PowerControl: Sendable {
    private let reason = Mutex<PowerOffReason?>(nil)
    private let signal = DispatchSemaphore(value: 0)

    /// Records `newReason` unless the machine is already powering off.
    func requestPowerOff(_ newReason: PowerOffReason) {
        let first = reason.withLock { current -> Bool in
            guard current == nil else { return false }
            current = newReason
            return true
        }
        if first { signal.signal() }
    }

    /// The recorded reason, once the machine is powering off.
    var powerOffReason: PowerOffReason? { reason.withLock { $0 } }

    /// Blocks the calling (vCPU) thread until the machine is powering off.
    func waitWhileRunning() {
        while powerOffReason == nil { usleep(2_000) }
    }

    /// Waits for a power-off request, at most until `deadlineNanoseconds` (monotonic), if given.
    /// - Returns: False when the deadline passed first.
    func waitForPowerOff(deadlineNanoseconds: UInt64?) -> Bool {
        guard let deadlineNanoseconds else {
            signal.wait()
            return true
        }
        let now = cvmfs_monotonic_ns()
        let remaining = deadlineNanoseconds > now ? deadlineNanoseconds - now : 0
        return signal.wait(timeout: .now() + .nanoseconds(Int(min(remaining, UInt64(Int.max))))) == .success
    }
}
