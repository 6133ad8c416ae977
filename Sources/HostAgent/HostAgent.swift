public import VMFSCore
public import SystemSupport
public import HostNetworking
internal import VMManagement
internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// The host agent (`vmhostd`) without its HTTP layer: this host's only member of its volumes,
/// the owner of its registered VMs and their VMM processes, and the source of its events.
///
/// Every operation here blocks (it does volume I/O); the API layer calls them off its event loops.
public final class HostAgent: Sendable {
    /// Everything the agent is configured with.
    public struct Configuration: Sendable {
        public var settings: AgentContext.Settings
        public var datastores: [Datastore.Configuration]
        /// Virtual switches and port groups from the configuration file.
        public var network: NetworkConfiguration

        public init(settings: AgentContext.Settings, datastores: [Datastore.Configuration], network: NetworkConfiguration = NetworkConfiguration()) {
            self.settings = settings
            self.datastores = datastores
            self.network = network
        }
    }

    public let context: AgentContext
    public let datastores: [Datastore]
    let ha: HAController
    private let vms = Monitor<[String: ManagedVM]>([:])
    private let running = Monitor(true)
    let mounts = Monitor<[String: AgentMount]>([:])
    let mountProvider = Monitor<(@Sendable (Datastore, String, [String]) throws(AgentError) -> AgentMount)?>(nil)
    public let startedWall = MonotonicClock.wallNanoseconds

    var settings: AgentContext.Settings { context.settings }
    var inventoryPath: String { "\(settings.stateDirectory)/inventory.json" }

    /// Creates the agent's directories and reads its inventory; ``start()`` joins the volumes.
    public init(configuration: Configuration) throws(AgentError) {
        let settings = configuration.settings
        for (directory, mode) in [(settings.stateDirectory, 0o700), (settings.runDirectory, 0o700), (settings.vmRunDirectory, 0o700)] {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw AgentError(.failed, "cannot create directory \(directory): \(error)")
            }
            chmod(directory, mode_t(mode))
        }
        let pool: WorkerPool
        do { pool = try WorkerPool(threads: 16, name: "hostd-io") } catch {
            throw AgentError(.failed, "cannot start the disk worker threads: \(error)")
        }
        context = AgentContext(settings: settings, events: EventLog(path: "\(settings.stateDirectory)/events.jsonl"),
                               tasks: TaskManager(), pool: pool,
                               network: try AgentNetwork(configuration: configuration.network, stateDirectory: settings.stateDirectory))
        var options = MountOptions(host: settings.host)
        options.adoptFileLocks = true
        // A file closed through a FUSE mount is released asynchronously: opens wait a moment for it.
        options.lockWaitMs = 1000
        datastores = configuration.datastores.map { datastore in
            var mountOptions = options
            if let socket = settings.apiSocket,
               let note = try? JSONEncoder().encode(Datastore.HolderNote(agentSocket: socket, datastore: datastore.name, pid: getpid())) {
                mountOptions.holderNote = String(decoding: note, as: UTF8.self)
            }
            return Datastore(configuration: datastore, options: mountOptions)
        }
        let memory = Self.memoryInfo().total
        ha = HAController(context: context, datastores: datastores,
                          capacityMemoryBytes: settings.haCapacityMemoryBytes ?? memory.subtractingClamped(1 << 30))
        let inventory = try VMInventory.load(path: inventoryPath)
        var loaded: [String: ManagedVM] = [:]
        for entry in inventory.vms {
            guard let datastore = datastores.first(where: { $0.name == entry.datastore }) else { continue }
            loaded[entry.uuid] = ManagedVM(uuid: entry.uuid, name: entry.name, datastore: datastore, context: context)
        }
        vms.withLock { $0 = loaded }
        ha.attach(self)
        context.observePowerChanges { [weak self] vm, state, by in
            // A VM its guest powered off stays off; one that crashed is still wanted.
            if state == .poweredOff && by == "guest" { self?.setDesiredRunning(vm, false) }
        }
    }

    // MARK: Life cycle

    /// Joins the volumes, adopts VMMs left running by a previous agent, and starts renewing leases.
    public func start() {
        for datastore in datastores {
            attach(datastore)
        }
        startNetwork()
        adoptRunningVMs()
        for datastore in datastores {
            try? datastore.volume().finishAdoption()
        }
        context.events.record(HostEvent(kind: .agentStarted, message: "host agent started on \(settings.host.name)"))
        try? NativeThread.detach(name: "hostd-lease") { [self] in keepLeases() }
        try? NativeThread.detach(name: "hostd-attach") { [self] in retryUnreachableVolumes() }
        ha.start()
    }

    private func attach(_ datastore: Datastore) {
        if let error = datastore.attach() {
            context.events.record(HostEvent(kind: .volumeUnreachable, severity: .error, volume: datastore.name, message: error.message))
            return
        }
        guard let volume = try? datastore.volume() else { return }
        volume.setEventHandler { [weak self] event in self?.volumeEvent(event, datastore: datastore) }
        context.events.record(HostEvent(kind: .volumeAttached, volume: datastore.name,
                                        message: "volume '\(datastore.name)' attached (\(datastore.configuration.device))"))
    }

    private func volumeEvent(_ event: VolumeEvent, datastore: Datastore) {
        switch event {
        case .membershipLost(let reason):
            context.events.record(HostEvent(kind: .volumeMembershipLost, severity: .error, volume: datastore.name,
                                            message: "this host lost its membership of '\(datastore.name)': \(reason)"))
            for vm in allVMs where vm.datastore === datastore { vm.membershipLost(reason: reason) }
        case .rejoined(let slot):
            context.events.record(HostEvent(kind: .volumeRejoined, volume: datastore.name,
                                            message: "this host rejoined '\(datastore.name)' in heartbeat slot \(slot)"))
        }
    }

    private func retryUnreachableVolumes() {
        while running.withLock({ $0 }) {
            MonotonicClock.sleep(milliseconds: 2000)
            for datastore in datastores {
                if case .unreachable = datastore.status { attach(datastore) }
            }
        }
    }

    private func keepLeases() {
        while running.withLock({ $0 }) {
            for vm in allVMs { vm.renewLease() }
            MonotonicClock.sleep(milliseconds: 20)
        }
    }

    private func adoptRunningVMs() {
        for record in RuntimeRecord.all(in: settings.vmRunDirectory) {
            guard let vm = vm(uuid: record.vmUUID) else {
                // A VMM of a VM no longer registered here: it must not run unmanaged.
                if let process = try? VMMProcess.adopt(pid: record.pid), process.startTicks == record.pidStartTicks { process.kill() }
                RuntimeRecord.remove(directory: settings.vmRunDirectory, uuid: record.vmUUID)
                continue
            }
            guard VMMProcess.startTicks(of: record.pid) == record.pidStartTicks else {
                RuntimeRecord.remove(directory: settings.vmRunDirectory, uuid: record.vmUUID)
                continue
            }
            do { try vm.adopt(record) } catch {
                context.events.record(HostEvent(kind: .vmCrashed, severity: .error, vm: vm.uuid, vmName: vm.name, volume: vm.datastore.name,
                                                message: "VM '\(vm.name)' could not be adopted: \(error.message)"))
                RuntimeRecord.remove(directory: settings.vmRunDirectory, uuid: record.vmUUID)
            }
        }
    }

    /// Stops the agent. VMs keep running (a new agent adopts them) unless `powerOffVMs`; volumes
    /// with running VMs are handed over to the next agent, the others are left cleanly.
    public func shutdown(powerOffVMs: Bool) {
        running.withLock { $0 = false }
        ha.stop()
        for mount in mounts.withLock({ Array($0.values) }) { mount.stop() }
        mounts.withLock { $0.removeAll() }
        context.events.record(HostEvent(kind: .agentStopping, message: powerOffVMs
            ? "host agent stopping; powering off its VMs" : "host agent stopping; its VMs keep running"))
        if powerOffVMs {
            for vm in allVMs where vm.power.isActive { try? vm.powerOff() }
        }
        context.network.host.shutdown(removingPorts: false)
        for datastore in datastores {
            let busy = allVMs.filter { $0.datastore === datastore && $0.power.isActive }
            guard let volume = try? datastore.volume() else { continue }
            for vm in busy { vm.stopServingDisks() }
            if busy.isEmpty { datastore.detach() } else { try? volume.handOver() }
        }
    }

    // MARK: Inventory

    var allVMs: [ManagedVM] { vms.withLock { Array($0.values) } }

    func vm(uuid: String) -> ManagedVM? { vms.withLock { $0[uuid] } }

    /// The VM named by `reference`: its UUID, or its name when that is unique on this host.
    public func lookup(_ reference: String) throws(AgentError) -> ManagedVM {
        let (byUUID, byName) = vms.withLock { all in
            (all[reference.lowercased()], all.values.filter { $0.name == reference })
        }
        if let byUUID { return byUUID }
        guard !byName.isEmpty else { throw AgentError(.notFound, "no VM '\(reference)' is registered on this host", field: "vm") }
        guard byName.count == 1, let only = byName.first else {
            throw AgentError(.invalidArgument, "\(byName.count) VMs named '\(reference)' are registered here; use the UUID", field: "vm")
        }
        return only
    }

    public func datastore(named name: String) throws(AgentError) -> Datastore {
        guard let datastore = datastores.first(where: { $0.name == name }) else {
            throw AgentError(.notFound, "no volume '\(name)' is configured on this host (configured: "
                             + datastores.map(\.name).joined(separator: ", ") + ")", field: "volume")
        }
        return datastore
    }

    func saveInventory() throws(AgentError) {
        let entries = allVMs.map { VMInventory.Entry(uuid: $0.uuid, datastore: $0.datastore.name, name: $0.name) }
            .sorted { $0.name < $1.name }
        try VMInventory(vms: entries).save(path: inventoryPath)
    }

    /// Registers VM `name` from its files on `datastore` (giving it a UUID if it has none).
    @discardableResult
    public func register(datastore name: String, vm vmName: String) throws(AgentError) -> ManagedVM {
        let datastore = try datastore(named: name)
        let volume = try datastore.volume()
        let uuid = try VMRegistration.identity(of: vmName, on: volume)
        let vm = ManagedVM(uuid: uuid, name: vmName, datastore: datastore, context: context)
        try vms.withLock { (all) throws(AgentError) in
            if let existing = all[uuid] {
                throw AgentError(.alreadyExists, "VM '\(existing.name)' (\(uuid)) is already registered on this host")
            }
            all[uuid] = vm
        }
        do { try saveInventory() } catch {
            vms.withLock { $0[uuid] = nil }
            throw error
        }
        context.events.record(HostEvent(kind: .vmRegistered, vm: uuid, vmName: vmName, volume: datastore.name,
                                        message: "VM '\(vmName)' registered from volume '\(datastore.name)'"))
        return vm
    }

    /// Forgets a powered-off VM; with `deleteFiles` its files are removed from the volume too.
    public func unregister(_ reference: String, deleteFiles: Bool) throws(AgentError) {
        let vm = try lookup(reference)
        try vm.exclusively("unregister") { () throws(AgentError) in
            guard !vm.power.isActive else { throw AgentError(.invalidState, "VM '\(vm.name)' is \(vm.power.rawValue); power it off first") }
            if deleteFiles {
                let store = VirtualMachineStore(volume: try vm.datastore.volume())
                do throws(VMError) { try store.remove(vm.name) } catch {
                    throw ManagedVM.agentError(error)
                }
            }
            vms.withLock { $0[vm.uuid] = nil }
            try saveInventory()
        }
        context.events.record(HostEvent(kind: .vmUnregistered, vm: vm.uuid, vmName: vm.name, volume: vm.datastore.name,
                                        message: "VM '\(vm.name)' unregistered\(deleteFiles ? " and its files deleted" : "")"))
    }

    // MARK: Power

    /// Starts a task that powers the VM on.
    public func powerOn(_ reference: String) throws(AgentError) -> AgentTask {
        let vm = try lookup(reference)
        try admit(vm)
        return context.tasks.start(operation: "powerOn", target: vm.uuid) { [self] (progress) throws(AgentError) -> String? in
            try vm.powerOn(progress: progress)
            setDesiredRunning(vm, true)
            return vm.uuid
        }
    }

    /// Starts a task that powers the VM off (hard: the guest gets no shutdown request).
    public func powerOff(_ reference: String) throws(AgentError) -> AgentTask {
        let vm = try lookup(reference)
        return context.tasks.start(operation: "powerOff", target: vm.uuid) { [self] (_) throws(AgentError) -> String? in
            setDesiredRunning(vm, false)
            try vm.powerOff()
            return vm.uuid
        }
    }

    /// Starts a task that resets the VM.
    public func reset(_ reference: String) throws(AgentError) -> AgentTask {
        let vm = try lookup(reference)
        return context.tasks.start(operation: "reset", target: vm.uuid) { (_) throws(AgentError) -> String? in
            try vm.reset()
            return vm.uuid
        }
    }
}

extension HostAgent {
    /// Starts a task that creates a VM's files and registers it.
    public func create(_ request: VMCreateRequest) throws(AgentError) -> AgentTask {
        _ = try VMCreation.validate(request)
        let datastore = try datastore(named: request.datastore)
        return context.tasks.start(operation: "create", target: request.name) { [self] (progress) throws(AgentError) -> String? in
            let volume = try datastore.volume()
            let definition = try VMCreation.create(request, on: volume)
            progress.update(80)
            context.events.record(HostEvent(kind: .vmCreated, vm: definition.uuid, vmName: request.name, volume: datastore.name,
                                            message: "VM '\(request.name)' created on volume '\(datastore.name)'"))
            let vm = try register(datastore: datastore.name, vm: request.name)
            return vm.uuid
        }
    }
}

extension ManagedVM {
    /// Powers the VM off and waits for it (what a power-off task does).
    public func powerOffNow() throws(AgentError) { try powerOff() }
}
