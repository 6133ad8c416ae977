/// The HA cluster as every member reads it from its volumes (`.ha-cluster.json`, docs/HA.md):
/// the members, the settings, every protected VM's settings and desired state, and the last
/// failovers. Written under the file's lock with `generation` increased; the copy with the
/// highest generation wins when volumes disagree.
public struct HAConfiguration: Codable, Sendable, Equatable {
    public enum Priority: String, Codable, Sendable, Comparable, CaseIterable {
        case high, medium, low

        var rank: Int { self == .high ? 0 : (self == .medium ? 1 : 2) }
        public static func < (a: Priority, b: Priority) -> Bool { a.rank < b.rank }
    }

    /// What a host that lost the volume does with its VMs.
    public enum IsolationResponse: String, Codable, Sendable {
        /// Power them off: the survivors restart them.
        case powerOff
        /// Leave them paused (their lease ran out) and let the fence decide.
        case leaveRunning
    }

    public struct Settings: Codable, Sendable, Equatable {
        /// Host failures whose VMs must still fit on the others (admission control); 0 turns it off.
        public var failuresToTolerate: Int = 1
        public var isolationResponse: IsolationResponse = .powerOff
        /// A monitored guest silent for this long is reset.
        public var monitoringTimeoutSeconds: Int = 30
        /// At most this many monitoring resets of one VM per hour.
        public var maxResetsPerHour: Int = 3

        public init() {}
    }

    public struct VMSettings: Codable, Sendable, Equatable {
        public var name: String
        public var datastore: String
        public var protected: Bool
        public var priority: Priority
        public var monitoring: Bool
        /// The VM should run: set by a power-on, cleared by a power-off (by a user or its guest).
        public var desiredRunning: Bool
        /// Its host entered maintenance mode: another member restarts it there.
        public var evacuatingFrom: String?
        /// Memory it needs, for placement and admission control.
        public var memoryBytes: UInt64

        public init(name: String, datastore: String, protected: Bool = true, priority: Priority = .medium, monitoring: Bool = false,
                    desiredRunning: Bool = false, evacuatingFrom: String? = nil, memoryBytes: UInt64) {
            self.name = name
            self.datastore = datastore
            self.protected = protected
            self.priority = priority
            self.monitoring = monitoring
            self.desiredRunning = desiredRunning
            self.evacuatingFrom = evacuatingFrom
            self.memoryBytes = memoryBytes
        }

        /// True when a member should start it if it runs nowhere.
        public var wantsRestart: Bool { desiredRunning && (protected || evacuatingFrom != nil) }
    }

    /// One failover as the members that acted on it recorded it.
    public struct Failover: Codable, Sendable, Equatable {
        public struct Restart: Codable, Sendable, Equatable {
            public var vm: String
            public var name: String
            public var host: String
            /// Wall-clock times (ns since the epoch).
            public var poweredOn: Int64
            public var firstInstruction: Int64?
        }
        public var failedHost: String
        /// When the failed host's heartbeat was last seen changing (detected − D).
        public var failed: Int64
        public var detected: Int64
        /// When its locks were recovered (journal replayed, slot freed).
        public var recovered: Int64?
        public var restarts: [Restart]
    }

    public static let format = 1
    public var format = HAConfiguration.format
    public var cluster: String
    public var generation: UInt64 = 1
    /// Member host names (their volume identities).
    public var members: [String]
    public var settings = Settings()
    /// By VM UUID.
    public var vms: [String: VMSettings] = [:]
    /// The newest last (at most ``failoverHistory``).
    public var failovers: [Failover] = []
    public static let failoverHistory = 20

    public init(cluster: String, members: [String]) {
        self.cluster = cluster
        self.members = members
    }

    /// Bounds every value read from a volume must keep (sums of memory must not overflow).
    public static let maximumMemoryBytes: UInt64 = 1 << 46
    public static let maximumVMs = 4096

    /// Checks a copy read from a volume: the client checks plus the bounds arithmetic relies on.
    func checkStored() throws(AgentError) {
        guard format == Self.format else { throw AgentError(.failed, "format \(format) is not supported (this agent reads format \(Self.format))") }
        try validate()
        guard generation < 1 << 62 else { throw AgentError(.failed, "generation \(generation) is out of range") }
        guard vms.count <= Self.maximumVMs, failovers.count <= Self.failoverHistory * 2 else {
            throw AgentError(.failed, "\(vms.count) VMs and \(failovers.count) failovers exceed the bounds")
        }
        for (uuid, vm) in vms {
            guard uuid.utf8.count <= 64, !vm.name.isEmpty, vm.name.utf8.count <= 255, !vm.datastore.isEmpty, vm.datastore.utf8.count <= 64,
                  vm.memoryBytes <= Self.maximumMemoryBytes else {
                throw AgentError(.failed, "the settings of VM \(uuid.prefix(64)) are out of range")
            }
        }
        guard failovers.allSatisfy({ $0.restarts.count <= Self.maximumVMs }) else { throw AgentError(.failed, "a failover lists too many restarts") }
    }

    /// Checks what a client sent (names, bounds).
    public func validate() throws(AgentError) {
        guard !cluster.isEmpty, cluster.utf8.count <= 64 else {
            throw AgentError(.invalidArgument, "the cluster name must be 1–64 bytes", field: "cluster")
        }
        guard !members.isEmpty, members.count <= 64, Set(members).count == members.count,
              members.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 128 }) else {
            throw AgentError(.invalidArgument, "members must be 1–64 distinct host names", field: "members")
        }
        guard (0..<members.count).contains(settings.failuresToTolerate) || (members.count == 1 && settings.failuresToTolerate == 0) else {
            throw AgentError(.invalidArgument, "failuresToTolerate \(settings.failuresToTolerate) must be below the \(members.count) members",
                             field: "settings.failuresToTolerate")
        }
        guard (1...86_400).contains(settings.monitoringTimeoutSeconds) else {
            throw AgentError(.invalidArgument, "monitoringTimeoutSeconds must be 1 – 86400", field: "settings.monitoringTimeoutSeconds")
        }
        guard (0...60).contains(settings.maxResetsPerHour) else {
            throw AgentError(.invalidArgument, "maxResetsPerHour must be 0 – 60", field: "settings.maxResetsPerHour")
        }
    }
}

/// What a member publishes about itself on each volume (`.ha-host-NAME.json`) every second.
public struct HAHostStatus: Codable, Sendable, Equatable {
    public static let format = 1
    public var format = HAHostStatus.format
    public var host: String
    public var hostUUID: String
    public var updatedWallNanoseconds: Int64
    public var capacityMemoryBytes: UInt64
    public var usedMemoryBytes: UInt64
    public var cpuCount: Int
    public var maintenance: Bool
    /// UUIDs of the VMs running here.
    public var running: [String]
    /// Written by an agent that stops cleanly: its slot going free next is no failure.
    public var stopping: Bool? = nil

    /// Checks a copy read from a volume (another member wrote it; it may be damaged).
    func checkStored() throws(AgentError) {
        guard format == Self.format else { throw AgentError(.failed, "format \(format) is not supported (this agent reads format \(Self.format))") }
        guard !host.isEmpty, host.utf8.count <= 128, capacityMemoryBytes <= HAConfiguration.maximumMemoryBytes,
              usedMemoryBytes <= HAConfiguration.maximumMemoryBytes, (0...65_536).contains(cpuCount),
              running.count <= HAConfiguration.maximumVMs else {
            throw AgentError(.failed, "the status of host '\(host.prefix(128))' has values out of range")
        }
    }
}

/// A file the HA store reads from a volume and checks before use.
protocol HAStoredValue: Codable {
    func checkStored() throws(AgentError)
}

extension HAConfiguration: HAStoredValue {}
extension HAHostStatus: HAStoredValue {}
