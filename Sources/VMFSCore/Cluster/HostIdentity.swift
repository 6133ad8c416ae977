#if canImport(Glibc)
internal import Glibc
#endif

/// Who this host is on a shared volume.
///
/// By default the identity comes from `/etc/machine-id`, so every process of one machine is the
/// same host. `--host-id ID` (or `-o host_id=ID`) overrides it, which is how several hosts run on
/// one machine in the tests: a UUID is used as is, any other text is hashed to a stable UUID.
public struct HostIdentity: Sendable, Equatable {
    /// The host UUID recorded in heartbeat slots and lock records.
    public var uuid: HostUUID
    /// A human name shown next to the UUID (host name, or the `--host-id` text).
    public var name: String

    public init(uuid: HostUUID, name: String) {
        self.uuid = uuid
        self.name = name
    }

    /// This machine's identity, or the one named by `override`.
    public static func local(override: String? = nil) -> HostIdentity {
        if let override, !override.isEmpty {
            return HostIdentity(uuid: HostUUID.parseOrDerive(override), name: override)
        }
        let uuid = HostUUID.machineID() ?? HostUUID.derived(from: hostName())
        return HostIdentity(uuid: uuid, name: hostName())
    }

    /// The kernel's host name.
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Heartbeat timing of one mount: the volume's values unless overridden (tests go sub-second).
public struct HeartbeatTiming: Sendable, Equatable {
    /// Renewal interval H.
    public var renewIntervalMs: UInt32
    /// Others declare this host dead after its slot has not changed for this long (D).
    public var deadIntervalMs: UInt32
    /// Longest a heartbeat or metadata I/O may take (T). Writes stop D − T after the last renewal.
    public var ioTimeoutMs: UInt32

    public init(renewIntervalMs: UInt32, deadIntervalMs: UInt32, ioTimeoutMs: UInt32) {
        self.renewIntervalMs = renewIntervalMs
        self.deadIntervalMs = deadIntervalMs
        self.ioTimeoutMs = ioTimeoutMs
    }

    /// The defaults VMware uses: renew every 3 s, dead after 16 s, I/O timeout 8 s.
    public static let vmwareDefaults = HeartbeatTiming(renewIntervalMs: 3000, deadIntervalMs: 16000, ioTimeoutMs: 8000)

    /// Longest renewal interval H a volume or a heartbeat slot may have (30 s).
    public static let maxRenewIntervalMs: UInt32 = 30_000
    /// Longest I/O timeout T (2 minutes).
    public static let maxIOTimeoutMs: UInt32 = 120_000
    /// Longest dead interval D (5 minutes): no wait that depends on another host's timing —
    /// watching a silent slot, waiting for a replay — lasts longer than a small multiple of it.
    public static let maxDeadIntervalMs: UInt32 = 300_000

    /// How long after issuing its last successful renewal this host may still write.
    var writeWindowNanoseconds: UInt64 { UInt64(deadIntervalMs - ioTimeoutMs) * 1_000_000 }

    /// Checks H < D − T, so that a healthy host renews well before it must stop writing, and
    /// every interval within its bounds (docs/FORMAT.md §3a).
    public func validate() throws(VMFSError) {
        guard renewIntervalMs >= 10, ioTimeoutMs >= 10, deadIntervalMs > ioTimeoutMs,
              deadIntervalMs - ioTimeoutMs > renewIntervalMs, renewIntervalMs <= Self.maxRenewIntervalMs,
              ioTimeoutMs <= Self.maxIOTimeoutMs, deadIntervalMs <= Self.maxDeadIntervalMs else {
            throw VMFSError(.invalidArgument,
                            "heartbeat timing H=\(renewIntervalMs) ms, D=\(deadIntervalMs) ms, T=\(ioTimeoutMs) ms: "
                            + "need 10 ms ≤ H ≤ \(Self.maxRenewIntervalMs) ms, 10 ms ≤ T ≤ \(Self.maxIOTimeoutMs) ms, "
                            + "D ≤ \(Self.maxDeadIntervalMs) ms and H < D − T")
        }
    }
}
