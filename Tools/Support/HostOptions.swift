public import ArgumentParser
public import VMFSCore

/// Options every tool that mounts a volume shares.
public struct HostIdentityOptions: ParsableArguments {
    @Option(name: .customLong("host-id"),
            help: "Host identity on the volume: a UUID, or any text hashed to one. Default: /etc/machine-id.")
    public var hostID: String?

    @Option(name: .customLong("heartbeat-ms"), help: ArgumentHelp("Override the heartbeat interval H (tests).", visibility: .hidden))
    public var heartbeatMs: UInt32?

    @Option(name: .customLong("dead-ms"), help: ArgumentHelp("Override the dead interval D (tests).", visibility: .hidden))
    public var deadMs: UInt32?

    @Option(name: .customLong("io-timeout-ms"), help: ArgumentHelp("Override the I/O timeout T (tests).", visibility: .hidden))
    public var ioTimeoutMs: UInt32?

    @Option(name: .customLong("lock-wait-ms"), help: "How long to wait for a file locked by another host before failing with EBUSY.")
    public var lockWaitMs: UInt32 = 0

    public init() {}

    /// Mount options for these arguments, with the volume's timing unless overridden.
    public func mountOptions(readOnly: Bool = false) -> MountOptions {
        var options = MountOptions(host: HostIdentity.local(override: hostID))
        options.readOnly = readOnly
        options.lockWaitMs = lockWaitMs
        if let heartbeatMs, let deadMs, let ioTimeoutMs {
            options.timing = HeartbeatTiming(renewIntervalMs: heartbeatMs, deadIntervalMs: deadMs, ioTimeoutMs: ioTimeoutMs)
        }
        return options
    }
}
