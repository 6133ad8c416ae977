public import VMFSCore
internal import SystemSupport

/// The HA cluster as one member reports it.
public struct HAStatusView: Sendable {
    public struct Member: Sendable {
        public var name: String
        public var liveness: String
        public var maintenance: Bool
        public var capacityMemoryBytes: UInt64?
        public var usedMemoryBytes: UInt64?
        public var running: [String]
    }

    public struct ProtectedVM: Sendable {
        public var uuid: String
        public var settings: HAConfiguration.VMSettings
        /// The host holding its `.vmx` lock, if any.
        public var runningOn: String?
    }

    public var configuration: HAConfiguration?
    public var members: [Member]
    public var vms: [ProtectedVM]
    /// Admission control: memory left for protected VMs after the tolerated failures, and needed.
    public var failoverAvailableBytes: UInt64
    public var failoverRequiredBytes: UInt64
    public var failoverCapacityOK: Bool
}

extension HostAgent: HostAgentReference {
    var managedVMs: [ManagedVM] { allVMs }

    /// The registered VM with `uuid`, registering it from its files on `datastore` when it is not.
    func ensureRegistered(uuid: String, name: String, datastore: String) throws(AgentError) -> ManagedVM {
        if let vm = vm(uuid: uuid) { return vm }
        do {
            return try register(datastore: datastore, vm: name)
        } catch where error.code == .alreadyExists {
            guard let vm = vm(uuid: uuid) else { throw error }
            return vm
        }
    }

    // MARK: Configuration

    /// Creates or changes the HA cluster (members and settings; VM settings are kept).
    public func configureHA(cluster: String, members: [String], settings: HAConfiguration.Settings) throws(AgentError) -> HAConfiguration {
        var proposed = HAConfiguration(cluster: cluster, members: members)
        proposed.settings = settings
        try proposed.validate()
        let result = try ha.updateConfiguration { (configuration) throws(AgentError) in
            var next = configuration ?? proposed
            if let existing = configuration, existing.cluster != cluster {
                throw AgentError(.alreadyExists, "the volumes belong to HA cluster '\(existing.cluster)'", field: "cluster")
            }
            next.members = members
            next.settings = settings
            configuration = next
        }
        guard let result else { throw AgentError(.storageUnavailable, "no volume is attached to keep the HA configuration on") }
        context.events.record(HostEvent(kind: .haConfigured, message: "HA cluster '\(cluster)' configured: members \(members.joined(separator: ", "))"))
        return result
    }

    /// Sets a VM's HA settings (protection, restart priority, monitoring).
    public func setHA(_ reference: String, protected: Bool, priority: HAConfiguration.Priority, monitoring: Bool) throws(AgentError)
        -> HAConfiguration.VMSettings {
        let vm = try lookup(reference)
        let memory = vm.memoryBytes
        let running = vm.power.isActive
        var result: HAConfiguration.VMSettings?
        try ha.updateConfiguration { (configuration) throws(AgentError) in
            guard configuration != nil else { throw AgentError(.invalidState, "no HA cluster is configured on these volumes") }
            var entry = configuration?.vms[vm.uuid]
                ?? HAConfiguration.VMSettings(name: vm.name, datastore: vm.datastore.name, memoryBytes: memory)
            entry.protected = protected
            entry.priority = priority
            entry.monitoring = monitoring
            entry.memoryBytes = memory
            if running { entry.desiredRunning = true }
            configuration?.vms[vm.uuid] = entry
            result = entry
        }
        guard let result else { throw AgentError(.failed, "the HA configuration was not written") }
        return result
    }

    // MARK: Power hooks

    /// Admission control and refusals before a power-on (maintenance mode, capacity for failover).
    func admit(_ vm: ManagedVM) throws(AgentError) {
        if ha.inMaintenance { throw AgentError(.invalidState, "host \(context.settings.host.name) is in maintenance mode and takes no VMs") }
        guard let configuration = ha.configuration, configuration.members.contains(context.settings.host.name),
              configuration.vms[vm.uuid]?.protected == true, configuration.settings.failuresToTolerate > 0 else { return }
        let status = haStatus
        let needed = status.failoverRequiredBytes + (vm.power.isActive || configuration.vms[vm.uuid]?.desiredRunning == true ? 0 : vm.memoryBytes)
        if needed > status.failoverAvailableBytes {
            throw AgentError(.invalidState, "HA admission control: powering on '\(vm.name)' would need \(needed >> 20) MiB for the protected "
                             + "VMs after \(configuration.settings.failuresToTolerate) host failure(s), but the remaining members offer "
                             + "\(status.failoverAvailableBytes >> 20) MiB")
        }
    }

    /// Records the VM's desired state (it should run, or not) for HA.
    func setDesiredRunning(_ vm: ManagedVM, _ running: Bool) {
        guard let configuration = ha.configuration, configuration.vms[vm.uuid] != nil,
              configuration.vms[vm.uuid]?.desiredRunning != running else { return }
        _ = try? ha.updateConfiguration { (configuration) throws(AgentError) in configuration?.vms[vm.uuid]?.desiredRunning = running }
    }

    // MARK: Maintenance

    /// Enters maintenance mode: no new VMs here, and every running VM is handed to the other
    /// members (powered off here, restarted there by HA; live migration once it exists).
    public func enterMaintenance() throws(AgentError) -> AgentTask {
        guard let configuration = ha.configuration, configuration.members.contains(context.settings.host.name) else {
            throw AgentError(.invalidState, "this host is not a member of an HA cluster")
        }
        ha.state.withLock { $0.maintenance = true }
        ha.publishStatus()
        context.events.record(HostEvent(kind: .hostMaintenanceEntered, message: "host \(context.settings.host.name) entered maintenance mode"))
        return context.tasks.start(operation: "enterMaintenance", target: context.settings.host.name) { [self] (progress) throws(AgentError) -> String? in
            let running = allVMs.filter { $0.power.isActive }
            for (index, vm) in running.enumerated() {
                let memory = vm.memoryBytes
                try ha.updateConfiguration { (configuration) throws(AgentError) in
                    var entry = configuration?.vms[vm.uuid]
                        ?? HAConfiguration.VMSettings(name: vm.name, datastore: vm.datastore.name, protected: false, memoryBytes: memory)
                    entry.desiredRunning = true
                    entry.evacuatingFrom = context.settings.host.name
                    configuration?.vms[vm.uuid] = entry
                }
                try vm.powerOffNow()
                progress.update(100 * (index + 1) / max(1, running.count))
            }
            return "\(running.count) VM(s) handed over"
        }
    }

    public func exitMaintenance() {
        ha.state.withLock { $0.maintenance = false }
        ha.publishStatus()
        context.events.record(HostEvent(kind: .hostMaintenanceExited, message: "host \(context.settings.host.name) left maintenance mode"))
    }

    // MARK: Status

    public var haStatus: HAStatusView {
        let configuration = ha.configuration
        let members = configuration.map { ha.observeMembers($0) } ?? []
        var protected: [HAStatusView.ProtectedVM] = []
        for (uuid, settings) in (configuration?.vms ?? [:]).sorted(by: { $0.value.name < $1.value.name }) {
            let volume = try? datastore(named: settings.datastore).volume()
            let lock = try? volume?.lockState(ofFile: "\(settings.name).vmx")
            let holder = lock?.holders.first { $0.liveness == .alive || $0.liveness == .me }
            protected.append(HAStatusView.ProtectedVM(uuid: uuid, settings: settings,
                                                      runningOn: holder.map { $0.liveness == .me ? context.settings.host.name : $0.hostName }))
        }
        let capacities = members.compactMap(\.status?.capacityMemoryBytes)
        let required = (configuration?.vms.values ?? [:].values).filter { $0.protected && $0.desiredRunning }.reduce(0) { $0 + $1.memoryBytes }
        let capacity = HAPlacement.failoverCapacity(capacities: capacities, protectedMemory: required,
                                                    failures: configuration?.settings.failuresToTolerate ?? 0)
        return HAStatusView(
            configuration: configuration,
            members: members.map { HAStatusView.Member(name: $0.name, liveness: $0.liveness, maintenance: $0.status?.maintenance ?? false,
                                                       capacityMemoryBytes: $0.status?.capacityMemoryBytes,
                                                       usedMemoryBytes: $0.status?.usedMemoryBytes, running: $0.status?.running ?? []) },
            vms: protected, failoverAvailableBytes: capacity.available, failoverRequiredBytes: capacity.required,
            failoverCapacityOK: capacity.ok)
    }
}
