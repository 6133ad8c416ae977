public import VMFSCore
internal import SystemSupport
internal import FoundationEssentials

/// This host's part of HA (the role of vSphere's FDM agent). The volumes are the only arbiter:
/// a member is dead when its heartbeat slot has been silent for D (VMFSCore recovers it and frees
/// its locks), and a VM runs where its `.vmx` lock is held. Every member computes the same
/// placement for the protected VMs that run nowhere and starts those it drew; a VM's exclusive
/// lock makes sure exactly one member runs it. No network heartbeat is needed for safety.
final class HAController: Sendable {
    struct State {
        var configuration: HAConfiguration?
        var configurationRead: UInt64 = 0
        var statusWritten: UInt64 = 0
        var maintenance = false
        /// Power-ons this member started for HA, by VM UUID (monotonic start time).
        var starting: [String: UInt64] = [:]
        /// When a VM that should run was first seen running nowhere.
        var downSince: [String: UInt64] = [:]
        /// Backoff of VMs no member could start (next try, monotonic) and when it was last reported.
        var retryAfter: [String: UInt64] = [:]
        var reportedUnplaced: [String: UInt64] = [:]
        /// Monitoring resets per VM (monotonic times in the last hour) and when it was last reset.
        var resets: [String: [UInt64]] = [:]
        var resetAt: [String: UInt64] = [:]
        /// The liveness last seen of each member, and failures detected (host → record key).
        var liveness: [String: String] = [:]
        var failures: [String: FailureRecord] = [:]
        /// Members seen dead but not yet recovered, and the event to report once that is
        /// confirmed (see ``noteLiveness(_:_:slot:volume:)``).
        var suspected: [String: HostEvent] = [:]
        var isolatedSince: UInt64?
        var statuses: [String: HAHostStatus] = [:]
        /// Restarts done here not yet written to the failover records, and whether a writer runs.
        var unrecordedRestarts: [RestartRecord] = []
        var recordingRestarts = false
    }

    /// A restart this member did, waiting to be written to the cluster's failover records.
    struct RestartRecord: Sendable {
        var restart: HAConfiguration.Failover.Restart
        var failure: FailureRecord?
    }

    /// A failure this member saw, until its restarts are recorded.
    struct FailureRecord: Sendable {
        var host: String
        var generation: UInt64
        var failed: Int64
        var detected: Int64
        var detectedMonotonic: UInt64
        var recovered: Int64?
    }

    private let owner = Monitor<WeakAgent>(WeakAgent())
    let capacityMemoryBytes: UInt64
    let context: AgentContext
    let datastores: [Datastore]
    let state = Monitor(State())
    private let running = Monitor(false)

    /// The agent (held weakly: the agent owns this controller).
    final class WeakAgent: @unchecked Sendable {
        weak var value: (any HostAgentReference)?
    }

    static let tickMilliseconds: UInt64 = 100
    static let configurationEveryNanoseconds: UInt64 = 300_000_000
    static let statusEveryNanoseconds: UInt64 = 1_000_000_000
    /// After this long running nowhere, a VM drawn by another member may be started by any.
    static let restartGraceNanoseconds: UInt64 = 3_000_000_000

    init(context: AgentContext, datastores: [Datastore], capacityMemoryBytes: UInt64) {
        self.context = context
        self.datastores = datastores
        self.capacityMemoryBytes = capacityMemoryBytes
    }

    /// The agent, while it lives.
    var agent: (any HostAgentReference)? { owner.withLock { $0.value } }

    /// Binds the controller to its agent (at the end of the agent's initialization).
    func attach(_ agent: any HostAgentReference) { owner.withLock { $0.value = agent } }

    var hostName: String { context.settings.host.name }

    func start() {
        running.withLock { $0 = true }
        try? NativeThread.detach(name: "hostd-ha") { [weak self] in
            while let self, self.running.withLock({ $0 }), self.owner.withLock({ $0.value }) != nil {
                self.tick()
                MonotonicClock.sleep(milliseconds: Self.tickMilliseconds)
            }
        }
    }

    /// Stops the controller; a member says it leaves cleanly, so the others do not count its
    /// slot going free as a failure.
    func stop() {
        running.withLock { $0 = false }
        guard let configuration, configuration.members.contains(hostName) else { return }
        var status = ownStatus()
        status.stopping = true
        for (_, volume) in volumes { try? HAStore.write(status, HAStore.statusFile(hostName), on: volume) }
    }

    var configuration: HAConfiguration? { state.withLock { $0.configuration } }
    var inMaintenance: Bool { state.withLock { $0.maintenance } }

    /// One round: refresh the configuration, publish this host, watch members, restart, monitor.
    func tick() {
        let now = MonotonicClock.nanoseconds
        if now - state.withLock({ $0.configurationRead }) >= Self.configurationEveryNanoseconds { refreshConfiguration() }
        guard let configuration = state.withLock({ $0.configuration }), configuration.members.contains(hostName) else { return }
        if now - state.withLock({ $0.statusWritten }) >= Self.statusEveryNanoseconds { publishStatus() }
        let members = observeMembers(configuration)
        handleIsolation(configuration)
        restartVMsThatRunNowhere(configuration, members: members)
        recordRestartsInBackground()
        monitorGuests(configuration)
    }

    // MARK: Configuration

    /// The attached volumes (the cluster's configuration is kept on each).
    var volumes: [(Datastore, Volume)] {
        datastores.compactMap { datastore in (try? datastore.volume()).map { (datastore, $0) } }
    }

    /// Reads the configuration from every attached volume; the highest generation wins.
    func refreshConfiguration() {
        var newest: HAConfiguration?
        for (_, volume) in volumes {
            guard let copy = try? HAStore.read(HAConfiguration.self, HAStore.configurationFile, on: volume) else { continue }
            if copy.generation > newest?.generation ?? 0 { newest = copy }
        }
        state.withLock { s in
            s.configurationRead = MonotonicClock.nanoseconds
            if let newest { s.configuration = newest }
        }
    }

    /// Applies `change` to the configuration kept on the attached volumes (HAStore.update).
    @discardableResult
    func updateConfiguration(_ change: (inout HAConfiguration?) throws(AgentError) -> Void) throws(AgentError) -> HAConfiguration? {
        // Ordered by volume UUID, so every member picks the same primary whatever it names it.
        let attached = volumes.map(\.1).sorted { "\($0.header.uuid)" < "\($1.header.uuid)" }
        guard !attached.isEmpty else { throw AgentError(.storageUnavailable, "no volume is attached to keep the HA configuration on") }
        let result = try HAStore.update(on: attached, change)
        state.withLock { s in
            if let result { s.configuration = result }
            s.configurationRead = MonotonicClock.nanoseconds
        }
        return result
    }

    // MARK: Members

    /// This host's status, as published.
    func ownStatus() -> HAHostStatus {
        let running = (agent?.managedVMs ?? []).filter { $0.power.isActive }
        return HAHostStatus(
            host: hostName, hostUUID: "\(context.settings.host.uuid)", updatedWallNanoseconds: MonotonicClock.wallNanoseconds,
            capacityMemoryBytes: capacityMemoryBytes, usedMemoryBytes: running.reduce(0) { $0 + $1.memoryBytes },
            cpuCount: ProcessInfo.processInfo.activeProcessorCount, maintenance: inMaintenance, running: running.map(\.uuid).sorted())
    }

    func publishStatus() {
        let status = ownStatus()
        for (_, volume) in volumes { try? HAStore.write(status, HAStore.statusFile(hostName), on: volume) }
        state.withLock { s in
            s.statusWritten = MonotonicClock.nanoseconds
            s.statuses[hostName] = status
        }
    }

    /// A member as this host sees it now.
    struct MemberView: Sendable {
        var name: String
        var liveness: String
        var status: HAHostStatus?
        var isLive: Bool { liveness == "alive" || liveness == "this host" }
    }

    /// Liveness of every member from the heartbeat region, their published statuses, and failure
    /// records for members that just died.
    func observeMembers(_ configuration: HAConfiguration) -> [MemberView] {
        guard let (_, volume) = volumes.first, let hosts = try? volume.hosts() else { return [] }
        var views: [MemberView] = []
        for member in configuration.members {
            let slot = hosts.filter { $0.hostName == member }.max { $0.generation < $1.generation }
            let liveness: String
            if member == hostName {
                liveness = "this host"
            } else if let slot {
                liveness = slot.state == "free" ? "down" : slot.liveness
            } else {
                liveness = "down"
            }
            var status = state.withLock { $0.statuses[member] }
            if member != hostName, liveness == "alive" || status == nil {
                status = (try? HAStore.read(HAHostStatus.self, HAStore.statusFile(member), on: volume)) ?? status
                if let status { state.withLock { $0.statuses[member] = status } }
            }
            noteLiveness(member, liveness, slot: slot, volume: volume)
            views.append(MemberView(name: member, liveness: liveness, status: member == hostName ? ownStatus() : status))
        }
        return views
    }

    /// Notes a member's liveness; a member seen alive that is now dead, being recovered, or whose
    /// slot went free without a clean stop has failed (the slot may be recovered before this
    /// member ever sees it dead).
    private func noteLiveness(_ member: String, _ liveness: String, slot: HostInfo?, volume: Volume) {
        guard member != hostName else { return }
        let failedNow = ["dead", "replaying", "replay-abandoned", "down"].contains(liveness)
        let previous = state.withLock { s -> String? in
            defer { s.liveness[member] = liveness }
            return s.liveness[member]
        }
        if previous == "alive" && failedNow {
            if liveness == "down", (try? HAStore.read(HAHostStatus.self, HAStore.statusFile(member), on: volume))?.stopping == true { return }
            let now = MonotonicClock.wallNanoseconds
            // The heartbeat was last seen changing msSinceChange ago (about D when seen dead).
            let dead = Int64(slot?.msSinceChange ?? UInt64(slot?.deadIntervalMs ?? 0)) * 1_000_000
            state.withLock { s in
                s.failures[member] = FailureRecord(host: member, generation: slot?.generation ?? 0, failed: now - dead, detected: now,
                                                   detectedMonotonic: MonotonicClock.nanoseconds,
                                                   recovered: liveness == "down" ? now : nil)
            }
            // Recover it now rather than at this host's next heartbeat renewal (up to H away).
            if liveness != "down" { try? volume.recoverDeadHostsInBackground() }
            let event = HostEvent(kind: .haHostFailed, severity: .warning,
                                  message: "HA: member \(member) failed (heartbeat silent for \(slot?.deadIntervalMs ?? 0) ms)")
            // A heartbeat seen silent for D is reported once the member is recovered (its slot
            // replayed or freed): a member that renews again first was late, not gone (a host
            // starved of CPU for longer than D), and nothing of it moves.
            if liveness == "dead" {
                state.withLock { $0.suspected[member] = event }
            } else {
                context.events.record(event)
            }
        } else if let event = state.withLock({ s in failedNow && liveness != "dead" ? s.suspected.removeValue(forKey: member) : nil }) {
            context.events.record(event)
        } else if liveness == "alive", let event = state.withLock({ $0.suspected.removeValue(forKey: member) }) {
            let failedGeneration = state.withLock { $0.failures[member]?.generation }
            if let failedGeneration, let slot, slot.generation != failedGeneration {
                // Recovered and back with a new membership between two looks: it did fail.
                context.events.record(event)
            } else {
                // Renewed again before anyone recovered it: it was late, not gone.
                state.withLock { _ = $0.failures.removeValue(forKey: member) }
            }
        }
        if liveness == "down" {
            state.withLock { s in
                if s.failures[member] != nil && s.failures[member]?.recovered == nil { s.failures[member]?.recovered = MonotonicClock.wallNanoseconds }
            }
        }
    }
}

/// What the HA controller needs of the agent (kept narrow so it can be tested alone).
protocol HostAgentReference: AnyObject, Sendable {
    var managedVMs: [ManagedVM] { get }
    func vm(uuid: String) -> ManagedVM?
    func ensureRegistered(uuid: String, name: String, datastore: String) throws(AgentError) -> ManagedVM
}
