/// What a VMM is doing, as it reports it.
public enum VMXRunState: String, Codable, Sendable {
    /// Waiting for its configuration.
    case unconfigured
    /// Configured (the VM is built) but not started.
    case configured
    /// Built to receive a migration (`configureIncoming`); `configured` once the state is restored.
    case incoming
    /// vCPUs run the guest.
    case running
    /// vCPUs are held out of the guest (lease expired, or asked to pause).
    case paused
    /// The guest powered off or was stopped; the VMM exits after reporting it.
    case stopped
}

/// `hello` (agent → VMM): the first message on every connection.
public struct HelloRequest: Codable, Sendable, Equatable {
    public var protocolVersion: Int
    /// The agent's name and version.
    public var agent: String
    /// The host identity the agent runs as.
    public var host: String

    public init(protocolVersion: Int = Int(VMXProtocol.version), agent: String, host: String) {
        self.protocolVersion = protocolVersion
        self.agent = agent
        self.host = host
    }
}

/// `helloReply` (VMM → agent).
public struct HelloReply: Codable, Sendable, Equatable {
    public var protocolVersion: Int
    public var vmx: String
    public var pid: Int32
    public var state: VMXRunState
    /// The VM it runs, once configured.
    public var vmUUID: String?

    public init(protocolVersion: Int = Int(VMXProtocol.version), vmx: String, pid: Int32, state: VMXRunState, vmUUID: String?) {
        self.protocolVersion = protocolVersion
        self.vmx = vmx
        self.pid = pid
        self.state = state
        self.vmUUID = vmUUID
    }
}

/// How the VM boots; images arrive as descriptors of the same frame (indexes into them).
public struct BootSpecification: Codable, Sendable, Equatable {
    /// `linux` or `testGuest`.
    public enum Kind: String, Codable, Sendable { case linux, testGuest }

    public var kind: Kind
    /// Index of the kernel or test-guest image descriptor.
    public var imageDescriptor: Int
    /// Index of the initrd descriptor (Linux).
    public var initrdDescriptor: Int?
    public var commandLine: String?
    /// Test-guest workload number and arguments.
    public var workload: UInt32?
    public var arguments: [UInt64]?

    public init(kind: Kind, imageDescriptor: Int, initrdDescriptor: Int? = nil, commandLine: String? = nil,
                workload: UInt32? = nil, arguments: [UInt64]? = nil) {
        self.kind = kind
        self.imageDescriptor = imageDescriptor
        self.initrdDescriptor = initrdDescriptor
        self.commandLine = commandLine
        self.workload = workload
        self.arguments = arguments
    }
}

/// One disk served over a disk channel: its socket and data window arrive as descriptors.
public struct DiskSpecification: Codable, Sendable, Equatable {
    /// Returned to the guest for GET_ID (at most 20 bytes used).
    public var identifier: String
    public var byteCount: UInt64
    public var readOnly: Bool
    /// Size of the shared data window.
    public var windowBytes: UInt64
    /// Index of the queue memfd descriptor (``DiskQueue``).
    public var queueDescriptor: Int
    /// Index of the window memfd descriptor.
    public var windowDescriptor: Int
    /// Index of the eventfd the VMM rings when it put requests while the agent slept.
    public var requestDoorbellDescriptor: Int
    /// Index of the eventfd the agent rings when it put completions while the VMM slept.
    public var completionDoorbellDescriptor: Int

    /// A disk whose four descriptors are at `firstDescriptor` and the three after it, in the
    /// order queue, window, request doorbell, completion doorbell.
    public init(identifier: String, byteCount: UInt64, readOnly: Bool, windowBytes: UInt64, firstDescriptor: Int) {
        self.identifier = identifier
        self.byteCount = byteCount
        self.readOnly = readOnly
        self.windowBytes = windowBytes
        queueDescriptor = firstDescriptor
        windowDescriptor = firstDescriptor + 1
        requestDoorbellDescriptor = firstDescriptor + 2
        completionDoorbellDescriptor = firstDescriptor + 3
    }

    /// The indices of its descriptors.
    public var descriptorIndices: [Int] { [queueDescriptor, windowDescriptor, requestDoorbellDescriptor, completionDoorbellDescriptor] }
}

/// `configure` (agent → VMM): the VM to build.
public struct VMSpecification: Codable, Sendable, Equatable {
    public var uuid: String
    public var name: String
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    public var boot: BootSpecification
    public var disks: [DiskSpecification]
    /// How long a paused VMM with no agent waits before powering the VM off.
    public var orphanTimeoutMilliseconds: UInt64
    /// The first lease: the VM may run until this `CLOCK_MONOTONIC` time.
    public var leaseValidUntilMonotonicNanoseconds: UInt64
    /// NICs, each with its TAP descriptor (absent: none).
    public var networkInterfaces: [NetworkInterfaceSpecification]?

    public init(uuid: String, name: String, vcpuCount: Int, memoryBytes: UInt64, boot: BootSpecification,
                disks: [DiskSpecification], orphanTimeoutMilliseconds: UInt64, leaseValidUntilMonotonicNanoseconds: UInt64,
                networkInterfaces: [NetworkInterfaceSpecification]? = nil) {
        self.uuid = uuid
        self.name = name
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.boot = boot
        self.disks = disks
        self.orphanTimeoutMilliseconds = orphanTimeoutMilliseconds
        self.leaseValidUntilMonotonicNanoseconds = leaseValidUntilMonotonicNanoseconds
        self.networkInterfaces = networkInterfaces
    }
}

/// `lease` (agent → VMM).
public struct LeaseGrant: Codable, Sendable, Equatable {
    /// The VM may run until this `CLOCK_MONOTONIC` time.
    public var validUntilMonotonicNanoseconds: UInt64

    public init(validUntilMonotonicNanoseconds: UInt64) {
        self.validUntilMonotonicNanoseconds = validUntilMonotonicNanoseconds
    }
}

/// `attachDisks` (agent → VMM): new channels for the configured disks (after an agent restart).
public struct DiskAttachment: Codable, Sendable, Equatable {
    public var disks: [DiskSpecification]

    public init(disks: [DiskSpecification]) { self.disks = disks }
}

/// `pause` (agent → VMM).
public struct PauseRequest: Codable, Sendable, Equatable {
    public var reason: String

    public init(reason: String) { self.reason = reason }
}

/// `error` (VMM → agent): a request failed.
public struct ErrorReply: Codable, Sendable, Equatable {
    public var code: String
    public var message: String
    /// The type of the request it answers.
    public var inReplyTo: UInt16

    public init(code: String, message: String, inReplyTo: UInt16) {
        self.code = code
        self.message = message
        self.inReplyTo = inReplyTo
    }
}

/// `stateChanged` (VMM → agent).
public struct StateChange: Codable, Sendable, Equatable {
    public var state: VMXRunState
    public var reason: String
    /// The guest's power-off status, when it powered itself off.
    public var guestStatus: UInt32?
    public var monotonicNanoseconds: UInt64
    /// `CLOCK_REALTIME` of the change (migration downtime is measured across hosts with it).
    public var wallNanoseconds: Int64?

    public init(state: VMXRunState, reason: String, guestStatus: UInt32? = nil, monotonicNanoseconds: UInt64, wallNanoseconds: Int64? = nil) {
        self.state = state
        self.reason = reason
        self.guestStatus = guestStatus
        self.monotonicNanoseconds = monotonicNanoseconds
        self.wallNanoseconds = wallNanoseconds
    }
}

/// Per-disk counters in a ``StatusReport``.
public struct DiskCounters: Codable, Sendable, Equatable {
    public var reads: UInt64
    public var writes: UInt64
    public var flushes: UInt64
    public var discards: UInt64
    public var bytesRead: UInt64
    public var bytesWritten: UInt64
    public var rejected: UInt64

    public init(reads: UInt64 = 0, writes: UInt64 = 0, flushes: UInt64 = 0, discards: UInt64 = 0,
                bytesRead: UInt64 = 0, bytesWritten: UInt64 = 0, rejected: UInt64 = 0) {
        self.reads = reads
        self.writes = writes
        self.flushes = flushes
        self.discards = discards
        self.bytesRead = bytesRead
        self.bytesWritten = bytesWritten
        self.rejected = rejected
    }
}

/// `status` (VMM → agent): the answer to `statusRequest`.
public struct StatusReport: Codable, Sendable, Equatable {
    public var state: VMXRunState
    public var vmUUID: String?
    public var leaseValidUntilMonotonicNanoseconds: UInt64
    /// When vCPU 0 first reached guest code (the test guest's entry marker, else its first exit).
    public var firstInstructionMonotonicNanoseconds: UInt64?
    public var startedMonotonicNanoseconds: UInt64?
    public var disks: [DiskCounters]
    /// Per-NIC counters (absent: the VM has none).
    public var networkInterfaces: [NetworkCounters]?

    public init(state: VMXRunState, vmUUID: String?, leaseValidUntilMonotonicNanoseconds: UInt64,
                firstInstructionMonotonicNanoseconds: UInt64?, startedMonotonicNanoseconds: UInt64?, disks: [DiskCounters],
                networkInterfaces: [NetworkCounters]? = nil) {
        self.state = state
        self.vmUUID = vmUUID
        self.leaseValidUntilMonotonicNanoseconds = leaseValidUntilMonotonicNanoseconds
        self.firstInstructionMonotonicNanoseconds = firstInstructionMonotonicNanoseconds
        self.startedMonotonicNanoseconds = startedMonotonicNanoseconds
        self.disks = disks
        self.networkInterfaces = networkInterfaces
    }
}

/// `marker` (VMM → agent): the test guest wrote a progress marker.
public struct MarkerReport: Codable, Sendable, Equatable {
    public var code: UInt32
    public var vcpu: Int
    public var monotonicNanoseconds: UInt64

    public init(code: UInt32, vcpu: Int, monotonicNanoseconds: UInt64) {
        self.code = code
        self.vcpu = vcpu
        self.monotonicNanoseconds = monotonicNanoseconds
    }
}

/// `guestHeartbeat` (VMM → agent): the guest's tools channel is alive (sent at most every 100 ms).
public struct GuestHeartbeat: Codable, Sendable, Equatable {
    /// Heartbeats since the VM booted.
    public var count: UInt64
    public var monotonicNanoseconds: UInt64

    public init(count: UInt64, monotonicNanoseconds: UInt64) {
        self.count = count
        self.monotonicNanoseconds = monotonicNanoseconds
    }
}
