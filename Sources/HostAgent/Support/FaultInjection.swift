#if canImport(Glibc)
internal import Glibc
#endif

/// Points where the agent can be made to stall, for tests that must kill a host at one exact
/// moment of an operation (`docs/AGENT.md`, "Fault injection"). Each is read once from the
/// environment; unset, a point costs one load of a constant.
enum FaultInjection {
    /// `VMHOSTD_FAULT_STALL_AFTER_HANDOFF_MS`: a migration's source waits this long after the
    /// destination committed the lock handover and before it stops serving the VM and ends its
    /// VMM, so a test can kill the source host after the handoff and before its cleanup.
    static let stallAfterHandoffMilliseconds: UInt32 = milliseconds("VMHOSTD_FAULT_STALL_AFTER_HANDOFF_MS")

    /// Sleeps for `milliseconds` (nothing when 0).
    static func stall(_ milliseconds: UInt32) {
        guard milliseconds > 0 else { return }
        usleep(milliseconds * 1000)
    }

    private static func milliseconds(_ name: String) -> UInt32 {
        guard let raw = getenv(name), let value = UInt32(String(cString: raw)), value <= 600_000 else { return 0 }
        return value
    }
}
