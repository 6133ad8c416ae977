public import VMFSCore
public import SystemSupport
internal import HostNetworking
internal import Hypervisor
internal import VMManagement
internal import VMXProtocol
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// One VM registered on this host, and its VMM process while it runs.
///
/// The agent owns the VM's state (``VMPowerState``). Powering on opens the VM's files for the VM
/// as a client (taking their cluster locks), starts a `vmx` process, serves its disks and relays
/// its console. The VM runs only while this agent renews its lease. When the VMM exits the files
/// are closed, which frees the locks, and the outcome is recorded as an event.
public final class ManagedVM: Sendable {
    public let uuid: String
    public let name: String
    public let datastore: Datastore
    let context: AgentContext

    struct Runtime: Sendable {
        var files: VMFileSet
        var process: VMMProcess
        var connection: VMMConnection?
        var disks: [DiskServer]
        var socketPath: String
        var leaseSent: UInt64 = 0
        /// The VMM said it stopped (guest power-off or requested power-off): its exit is clean.
        var stopReport: StateChange?
        var expectingExit = false
        /// The host ports (TAPs) of the VM's NICs.
        var ports: [String] = []
    }

    struct State: Sendable {
        var power: VMPowerState = .poweredOff
        var reason: String?
        var runtime: Runtime?
        var console: ConsoleLog?
        var poweredOnWall: Int64?
        var poweredOnMonotonic: UInt64?
        var firstInstruction: UInt64?
        var markers: [MarkerReport] = []
        var operation: String?
        var guestStatus: UInt32?
        /// The guest's tools heartbeats (VM monitoring): count and monotonic time of the last.
        var heartbeats: UInt64 = 0
        var lastHeartbeat: UInt64?
    }

    let state = Monitor(State())
    let cachedSettings = Mutex<VMSettings?>(nil)
    /// The migration this VM takes part in, if any (`ManagedVM+Migration.swift`).
    let migration = Monitor<VMMigration?>(nil)

    init(uuid: String, name: String, datastore: Datastore, context: AgentContext) {
        self.uuid = uuid
        self.name = name
        self.datastore = datastore
        self.context = context
    }

    var client: FileClient { FileClient("VM '\(name)'") }

    // MARK: State

    public var power: VMPowerState { state.withLock { $0.power } }

    func record(_ kind: HostEvent.Kind, _ message: String, severity: HostEvent.Severity = .info) {
        context.events.record(HostEvent(kind: kind, severity: severity, vm: uuid, vmName: name, volume: datastore.name, message: message))
    }

    /// Runs `body` as the VM's one operation in progress; another is refused with the one that runs.
    func exclusively<T>(_ operation: String, _ body: () throws(AgentError) -> T) throws(AgentError) -> T {
        try state.withLock { (s) throws(AgentError) in
            if let running = s.operation {
                throw AgentError(.busy, "VM '\(name)' is busy: \(running) is in progress")
            }
            s.operation = operation
        }
        defer { state.withLock { $0.operation = nil } }
        return try body()
    }

    // MARK: Power on

    /// Opens the VM's files, starts its VMM and runs it.
    func powerOn(progress: TaskManager.Progress?) throws(AgentError) {
        try exclusively("power on") { () throws(AgentError) in
            let current = power
            guard !current.isActive else {
                throw AgentError(.invalidState, "VM '\(name)' is \(current.rawValue)")
            }
            state.withLock { s in
                s.power = .starting
                s.reason = nil
                s.firstInstruction = nil
                s.markers = []
                s.guestStatus = nil
                s.heartbeats = 0
                s.lastHeartbeat = nil
            }
            do throws(AgentError) {
                try start(progress: progress)
            } catch {
                state.withLock { s in
                    s.power = .poweredOff
                    s.reason = error.message
                }
                throw error
            }
        }
    }

    private func start(progress: TaskManager.Progress?) throws(AgentError) {
        let volume = try datastore.volume()
        let files: VMFileSet
        do { files = try VMFileSet.open(volume: volume, name: name, client: client) } catch {
            throw Self.agentError(error)
        }
        progress?.update(20)
        cachedSettings.withLock { $0 = nil }
        var disks: [DiskServer] = []
        var process: VMMProcess?
        var ports: [ConnectedPort] = []
        do throws(AgentError) {
            let images = try BootImages.load(definition: files.definition, volume: volume, client: client)
            ports = try connectNetwork(files.definition)
            let console = ConsoleLog(handle: files.log, fileCapacity: context.settings.consoleLogCapacity)
            console.note("\(name) powered on by host \(context.settings.host.name) at \(formatWallTime(MonotonicClock.wallNanoseconds))")
            try makeDiskServers(files, into: &disks)
            let socketPath = "\(context.settings.vmRunDirectory)/\(uuid).sock"
            unlink(socketPath)
            process = try VMMProcess.spawn(executable: context.settings.vmxPath, socketPath: socketPath,
                                           logPath: "\(context.settings.vmRunDirectory)/\(uuid).vmx.log")
            guard let process else { throw AgentError(.failed, "the VMM did not start") }
            progress?.update(40)
            let channel = try VMMConnection.connect(socketPath: socketPath, timeoutNanoseconds: 10_000_000_000)
            state.withLock { s in
                s.console = console
                s.runtime = Runtime(files: files, process: process, connection: nil, disks: disks, socketPath: socketPath,
                                    ports: ports.map(\.status.name))
            }
            let connection = try connect(channel)
            _ = try connection.request(.hello(HelloRequest(agent: "vmhostd", host: context.settings.host.name)),
                                       timeoutNanoseconds: 5_000_000_000) { if case .helloReply = $0 { true } else { false } }
            let lease = volume.writeDeadline ?? 0
            var (specification, descriptors) = specification(files.definition, images: images, disks: disks, lease: lease)
            let (nics, portDescriptors) = networkSpecifications(files.definition, ports: ports, first: descriptors.count)
            if !nics.isEmpty {
                specification.networkInterfaces = nics
                descriptors += portDescriptors
            }
            // The boot images' descriptors travel as raw numbers: the images (which close them when
            // released) must live until the VMM has its copies. Optimized builds release them
            // after their last use otherwise, and the send fails with EBADF.
            _ = try withExtendedLifetime(images) { () throws(AgentError) in
                try connection.request(.configure(specification), descriptors: descriptors, timeoutNanoseconds: 60_000_000_000) {
                    if case .configured = $0 { true } else { false }
                }
            }
            for port in ports { close(port.descriptor) }
            ports = ports.map { ConnectedPort(status: $0.status, descriptor: -1) }
            for disk in disks {
                do { try disk.start() } catch { throw AgentError(.failed, "cannot serve the disks: \(error)") }
            }
            progress?.update(70)
            try RuntimeRecord(vmUUID: uuid, vmName: name, datastore: datastore.name, pid: process.pid, pidStartTicks: process.startTicks,
                              socketPath: socketPath, poweredOnNanoseconds: MonotonicClock.wallNanoseconds)
                .save(directory: context.settings.vmRunDirectory)
            watch(process)
            state.withLock { s in
                s.runtime?.leaseSent = lease
                s.poweredOnWall = MonotonicClock.wallNanoseconds
                s.poweredOnMonotonic = MonotonicClock.nanoseconds
                s.power = .running
            }
            try connection.send(.start)
            record(.vmPoweredOn, "VM '\(name)' powered on (VMM pid \(process.pid))")
            // Switches learn where the VM is now at once (an HA restart is a power-on elsewhere).
            if !ports.isEmpty { try? announceNetwork() }
        } catch {
            process?.kill()
            for disk in disks { disk.stop() }
            for port in ports where port.descriptor >= 0 { close(port.descriptor) }
            disconnectNetwork(ports.map(\.status.name))
            files.close()
            state.withLock { $0.runtime = nil }
            throw error
        }
    }

    /// One disk server (channel + window) per disk of `files`, appended to `disks` as they are made.
    func makeDiskServers(_ files: VMFileSet, into disks: inout [DiskServer]) throws(AgentError) {
        for (index, disk) in files.disks.enumerated() {
            let backend = VMFSDiskBackend(handle: disk.extent, identifier: Self.diskIdentifier(name, index))
            do {
                disks.append(try DiskServer(backend: backend, windowBytes: context.settings.diskWindowBytes,
                                            pool: context.pool, name: "\(uuid)-\(index)"))
            } catch {
                throw AgentError(.failed, "cannot create the disk channel of '\(disk.descriptor.extentFileName)': \(error)")
            }
        }
    }

    /// The identifier (virtio-blk GET_ID) of disk `index` of VM `name`.
    static func diskIdentifier(_ name: String, _ index: Int) -> String { String("\(name)-\(index)".prefix(20)) }

    /// Disk specifications for `disks`, their descriptors appended to `descriptors`.
    static func diskSpecifications(_ disks: [DiskServer], descriptors: inout [Int32]) -> [DiskSpecification] {
        var specifications: [DiskSpecification] = []
        for disk in disks {
            specifications.append(DiskSpecification(
                identifier: disk.backend.identifier, byteCount: disk.backend.byteCount, readOnly: disk.backend.isReadOnly,
                windowBytes: UInt64(disk.window.byteCount), firstDescriptor: descriptors.count))
            descriptors += disk.peerDescriptors
        }
        return specifications
    }

    /// The boot part of the `configure` message: image first, then the initrd, as descriptors 0 and 1.
    static func bootSpecification(_ definition: VirtualMachineDefinition, imageCount: Int) -> BootSpecification {
        switch definition.boot {
        case .linux(_, _, let commandLine):
            BootSpecification(kind: .linux, imageDescriptor: 0, initrdDescriptor: imageCount > 1 ? 1 : nil, commandLine: commandLine)
        case .testGuest(_, let workload, let arguments):
            BootSpecification(kind: .testGuest, imageDescriptor: 0, workload: workload.rawValue, arguments: arguments)
        }
    }

    /// The `configure` message and its descriptors: boot images, then per disk its channel and window.
    private func specification(_ definition: VirtualMachineDefinition, images: BootImages, disks: [DiskServer],
                               lease: UInt64) -> (VMSpecification, [Int32]) {
        var descriptors = images.descriptors.map(\.rawValue)
        let boot = Self.bootSpecification(definition, imageCount: images.descriptors.count)
        let specifications = Self.diskSpecifications(disks, descriptors: &descriptors)
        let specification = VMSpecification(uuid: uuid, name: name, vcpuCount: definition.vcpuCount, memoryBytes: definition.memoryBytes,
                                            boot: boot, disks: specifications,
                                            orphanTimeoutMilliseconds: context.settings.orphanTimeoutMilliseconds,
                                            leaseValidUntilMonotonicNanoseconds: lease)
        return (specification, descriptors)
    }

    /// Wraps a control channel to the VMM: messages go to ``handle(_:)``; a closed connection is noted.
    func connect(_ channel: ControlChannel) throws(AgentError) -> VMMConnection {
        let connection = try VMMConnection(channel: channel, onMessage: { [weak self] in self?.handle($0) },
                                           onClose: { [weak self] in self?.connectionClosed(channel) })
        state.withLock { $0.runtime?.connection = connection }
        return connection
    }

    private func connectionClosed(_ channel: ControlChannel) {
        state.withLock { s in
            if s.runtime?.connection?.channel === channel { s.runtime?.connection = nil }
        }
        incomingConnectionClosed(channel)
    }

    private func handle(_ message: ControlMessage) {
        switch message {
        case .consoleOutput(let bytes):
            state.withLock { $0.console }?.append(bytes)
        case .networkEvent(let report):
            networkEvent(report)
        case .marker(let marker):
            state.withLock { s in
                if marker.code == TestGuestABI.entryMarker && marker.vcpu == 0 && s.firstInstruction == nil {
                    s.firstInstruction = marker.monotonicNanoseconds
                }
                s.markers.append(marker)
                if s.markers.count > 1024 { s.markers.removeFirst(s.markers.count - 1024) }
            }
        case .guestHeartbeat(let beat):
            state.withLock { s in
                s.heartbeats = beat.count
                s.lastHeartbeat = beat.monotonicNanoseconds
            }
        case .stateChanged(let change):
            let event: (HostEvent.Kind, String)? = state.withLock { s in
                switch change.state {
                case .paused:
                    guard s.power == .running else { return nil }
                    s.power = .paused
                    s.reason = change.reason
                    return (.vmPaused, "VM '\(name)' paused: \(change.reason)")
                case .running:
                    guard s.power == .paused else { return nil }
                    s.power = .running
                    s.reason = nil
                    return (.vmResumed, "VM '\(name)' resumed")
                case .stopped:
                    s.runtime?.stopReport = change
                    s.guestStatus = change.guestStatus
                    return nil
                case .unconfigured, .configured, .incoming:
                    return nil
                }
            }
            if let (kind, text) = event { record(kind, text) }
            migration.withLock { $0 }?.observe(message)
        case .migrationProgress, .migrationReady, .migrationEnded, .error:
            migration.withLock { $0 }?.observe(message)
            incomingMessage(message)
        default:
            break
        }
    }

    // MARK: Exit

    /// Waits for the VMM's exit on a thread of its own, then cleans up.
    func watch(_ process: VMMProcess) {
        do {
            try NativeThread.detach(name: "hostd-vmm-wait") { [weak self] in
                let how = process.waitForExit()
                self?.exited(process, how: how)
            }
        } catch {
            record(.vmCrashed, "cannot watch the VMM of '\(name)': \(error)", severity: .error)
        }
    }

    private func exited(_ process: VMMProcess, how: String) {
        // Everything the VMM said before it exited is read before its exit is judged: its
        // connection reaches end of stream only after its last message.
        if let connection = state.withLock({ $0.runtime?.process === process ? $0.runtime?.connection : nil }) {
            let deadline = MonotonicClock.nanoseconds + 2_000_000_000
            while !connection.isClosed && MonotonicClock.nanoseconds < deadline { MonotonicClock.sleep(milliseconds: 1) }
        }
        let outcome = state.withLock { s -> (Runtime, VMPowerState, ConsoleLog?)? in
            guard let runtime = s.runtime, runtime.process === process else { return nil }
            s.runtime = nil
            let previous = s.power
            if previous == .lost {
                // Already handled: the locks were lost and the VM may run elsewhere.
            } else if runtime.stopReport != nil || runtime.expectingExit {
                s.power = .poweredOff
                s.reason = runtime.stopReport?.reason ?? "powered off"
            } else {
                s.power = .crashed
                s.reason = "the VMM \(how)"
            }
            return (runtime, previous, s.console)
        }
        guard let (runtime, previous, console) = outcome else { return }
        for disk in runtime.disks { disk.stop() }
        disconnectNetwork(runtime.ports)
        runtime.connection?.channel.socket.close()
        RuntimeRecord.remove(directory: context.settings.vmRunDirectory, uuid: uuid)
        unlink(runtime.socketPath)
        let (power, reason) = state.withLock { ($0.power, $0.reason ?? "") }
        console?.note("\(name) \(power == .crashed ? "crashed" : "stopped"): \(reason)")
        console?.close()
        runtime.files.close()
        context.powerChanged(self, power, runtime.stopReport?.guestStatus != nil && !runtime.expectingExit ? "guest" : "agent")
        switch power {
        case .crashed:
            record(.vmCrashed, "VM '\(name)' crashed: \(reason); its locks were released", severity: .error)
        case .poweredOff where runtime.stopReport?.guestStatus != nil && !runtime.expectingExit:
            record(.vmGuestPoweredOff, "VM '\(name)' was powered off by its guest (status \(runtime.stopReport?.guestStatus ?? 0))")
        case .poweredOff:
            record(.vmPoweredOff, "VM '\(name)' powered off: \(reason)")
        default:
            _ = previous
        }
    }

    // MARK: Power off and reset

    /// Stops the VM: asks its VMM to power off, and kills it if it has not exited in `graceNanoseconds`.
    func powerOff(graceNanoseconds: UInt64 = 10_000_000_000) throws(AgentError) {
        try exclusively("power off") { () throws(AgentError) in
            let runtime = try state.withLock { (s) throws(AgentError) -> Runtime in
                guard let runtime = s.runtime, s.power.isActive else {
                    throw AgentError(.invalidState, "VM '\(name)' is \(s.power.rawValue)")
                }
                s.power = .stopping
                s.runtime?.expectingExit = true
                return runtime
            }
            try? runtime.connection?.send(.powerOff)
            let deadline = MonotonicClock.nanoseconds + graceNanoseconds
            while runtime.process.isRunning && MonotonicClock.nanoseconds < deadline { MonotonicClock.sleep(milliseconds: 5) }
            if runtime.process.isRunning { runtime.process.kill() }
            // The exit watcher cleans up; wait for it so the locks are free when this returns.
            _ = state.wait(until: MonotonicClock.nanoseconds + 10_000_000_000, for: { $0.runtime == nil }) { _ in true }
        }
    }

    /// Resets the guest (a fresh boot in the same VMM, same disks).
    func reset() throws(AgentError) {
        try exclusively("reset") { () throws(AgentError) in
            guard let connection = state.withLock({ s in s.power == .running || s.power == .paused ? s.runtime?.connection : nil }) else {
                throw AgentError(.invalidState, "VM '\(name)' is \(power.rawValue)")
            }
            try connection.send(.reset)
            record(.vmReset, "VM '\(name)' was reset")
        }
    }

    /// Queues console input for the guest.
    func sendConsoleInput(_ bytes: [UInt8]) throws(AgentError) {
        guard let connection = state.withLock({ $0.runtime?.connection }) else {
            throw AgentError(.invalidState, "VM '\(name)' is \(power.rawValue); its console takes no input")
        }
        var rest = bytes[...]
        while !rest.isEmpty {
            let chunk = rest.prefix(4096)
            try connection.send(.consoleInput(Array(chunk)))
            rest = rest.dropFirst(chunk.count)
        }
    }

    // MARK: Lease and membership

    /// Sends the VMM a new lease when the volume's write deadline moved on.
    func renewLease() {
        guard let volume = try? datastore.volume(), let deadline = volume.writeDeadline else { return }
        let connection = state.withLock { s -> VMMConnection? in
            guard let runtime = s.runtime, s.power.isActive, s.power != .stopping, deadline > runtime.leaseSent,
                  let connection = runtime.connection else { return nil }
            s.runtime?.leaseSent = deadline
            return connection
        }
        try? connection?.send(.lease(LeaseGrant(validUntilMonotonicNanoseconds: deadline)))
    }

    /// This host lost its membership of the VM's volume: the VM's locks are gone and HA may
    /// restart it elsewhere, so its VMM is stopped at once.
    func membershipLost(reason: String) {
        let runtime = state.withLock { s -> Runtime? in
            guard let runtime = s.runtime, s.power.isActive else { return nil }
            s.power = .lost
            s.reason = "this host lost its membership of volume '\(datastore.name)': \(reason)"
            return runtime
        }
        guard let runtime else { return }
        runtime.process.kill()
        record(.vmLockLost, "VM '\(name)' was stopped: this host lost volume '\(datastore.name)' (\(reason)); it may run elsewhere now",
               severity: .error)
    }

    /// HA's isolation response: the host cannot write to the volume, so its VMs are stopped here
    /// (the survivors restart them). The files stay as they are; the survivors recover the locks.
    func isolated(reason: String) {
        let runtime = state.withLock { s -> Runtime? in
            guard let runtime = s.runtime, s.power.isActive else { return nil }
            s.power = .lost
            s.reason = reason
            return runtime
        }
        runtime?.process.kill()
    }

    // MARK: Views

    static func agentError(_ error: VMError) -> AgentError {
        switch error.code {
        case .busy: AgentError(.busy, error.message, owner: error.cause?.message)
        case .notFound: AgentError(.notFound, error.message)
        case .alreadyExists: AgentError(.alreadyExists, error.message)
        case .invalidArgument, .malformedConfiguration: AgentError(.invalidArgument, error.message)
        case .storage: AgentError(.storageUnavailable, error.message)
        case .hypervisor: AgentError(.failed, error.message)
        }
    }
}
