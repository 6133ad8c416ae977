public import SystemSupport
public import VMFSCore
public import HostNetworking

/// What every part of the agent shares: settings, the event log, the task manager, the worker
/// pool for disk requests.
public final class AgentContext: Sendable {
    /// Settings of the agent that the VM machinery needs.
    public struct Settings: Sendable {
        /// The host identity on volumes.
        public var host: HostIdentity
        /// Path of the `vmx` executable.
        public var vmxPath: String
        /// Runtime directory (sockets, runtime records).
        public var runDirectory: String
        /// Persistent state directory (inventory, events).
        public var stateDirectory: String
        /// How long a VMM with no agent and an expired lease waits before powering off.
        public var orphanTimeoutMilliseconds: UInt64
        /// Size of each disk's shared data window.
        public var diskWindowBytes: Int
        /// `NAME.log` is restarted when it reaches this size.
        public var consoleLogCapacity: UInt64
        /// The local API socket, written into each volume's local host lock so commands find the agent.
        public var apiSocket: String?
        /// Memory this host offers to HA placement and admission control (default: its RAM less 1 GiB).
        public var haCapacityMemoryBytes: UInt64?

        public init(host: HostIdentity, vmxPath: String, runDirectory: String, stateDirectory: String,
                    orphanTimeoutMilliseconds: UInt64 = 32_000, diskWindowBytes: Int = 16 << 20,
                    consoleLogCapacity: UInt64 = 16 << 20, apiSocket: String? = nil, haCapacityMemoryBytes: UInt64? = nil) {
            self.host = host
            self.vmxPath = vmxPath
            self.runDirectory = runDirectory
            self.stateDirectory = stateDirectory
            self.orphanTimeoutMilliseconds = orphanTimeoutMilliseconds
            self.diskWindowBytes = diskWindowBytes
            self.consoleLogCapacity = consoleLogCapacity
            self.apiSocket = apiSocket
            self.haCapacityMemoryBytes = haCapacityMemoryBytes
        }

        /// Where runtime records and VMM control sockets live.
        public var vmRunDirectory: String { "\(runDirectory)/vms" }
    }

    public let settings: Settings
    public let events: EventLog
    /// Told when a VM stopped (its new state and who stopped it: "guest", "agent"); HA listens.
    private let powerObserver = Monitor<(@Sendable (ManagedVM, VMPowerState, String) -> Void)?>(nil)
    public let tasks: TaskManager
    public let pool: WorkerPool
    /// This host's virtual switches and port groups, and the VMs' ports on them.
    public let network: AgentNetwork

    public init(settings: Settings, events: EventLog, tasks: TaskManager, pool: WorkerPool, network: AgentNetwork) {
        self.settings = settings
        self.events = events
        self.tasks = tasks
        self.pool = pool
        self.network = network
    }

    func observePowerChanges(_ observer: @escaping @Sendable (ManagedVM, VMPowerState, String) -> Void) {
        powerObserver.withLock { $0 = observer }
    }

    func powerChanged(_ vm: ManagedVM, _ state: VMPowerState, _ by: String) {
        powerObserver.withLock { $0 }?(vm, state, by)
    }
}
