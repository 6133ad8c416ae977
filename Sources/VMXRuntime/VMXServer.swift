public import SystemSupport
internal import Hypervisor
internal import VMXProtocol
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// The VMM process of one VM (`vmx`): listens on its control socket for the host agent, builds the
/// VM it is given, runs it while its lease is valid, and reports what happens.
///
/// The control socket stays open for the VMM's whole life: when the agent goes away, the VM keeps
/// running until its lease expires (then it is paused), and a new agent can connect, adopt it and
/// renew the lease. A VMM paused with no agent for the orphan timeout powers the VM off.
public final class VMXServer: Sendable {
    /// Why the vCPUs are held out of the guest.
    enum PauseReason: String, Sendable {
        case leaseExpired = "lease expired", agentRequest = "paused by the agent", migration = "migration switchover"
    }

    struct State {
        var runState: VMXRunState = .unconfigured
        var specification: VMSpecification?
        var configuration: VirtualMachineConfiguration?
        var machine: VirtualMachine?
        var disks: [RemoteDiskBackend] = []
        /// Boot images, kept open for rebuilds after a guest reset.
        var images: [OwnedDescriptor] = []
        var startRequested = false
        var stopRequested = false
        var resetRequested = false
        var leaseValidUntil: UInt64 = 0
        var pauseReasons: Set<PauseReason> = []
        var channel: ControlChannel?
        var disconnectedSince: UInt64? = MonotonicClock.nanoseconds
        var firstInstruction: UInt64?
        var started: UInt64?
        /// The migration this VMM takes part in, if any.
        var migration: VMXMigration?
        /// Destination: the machine built by `configureIncoming`, until the migration restored it.
        var pendingMachine: VirtualMachine?
    }

    let state = Monitor(State())
    /// Serializes pausing and resuming the VM.
    private let transitions = Mutex(())
    private let lastHeartbeatSent = Mutex<UInt64>(0)
    let outbox: Outbox
    private let listener: OwnedDescriptor
    public let socketPath: String
    private let version: String

    /// Listens on `socketPath` (created 0600; an existing file is replaced).
    public init(socketPath: String, version: String) throws(SystemError) {
        let fd = cvmfs_seqpacket_listen(socketPath, 4)
        guard fd >= 0 else { throw SystemError("listen", errno: -fd, subject: socketPath) }
        listener = OwnedDescriptor(fd)
        chmod(socketPath, 0o600)
        self.socketPath = socketPath
        self.version = version
        outbox = try Outbox()
    }

    /// Serves the agent and runs the VM; returns the process exit status once the VM stopped.
    public func run() -> Int32 {
        do {
            try NativeThread.detach(name: "vmx-accept") { [self] in acceptConnections() }
            try NativeThread.detach(name: "vmx-lease") { [self] in watchLease() }
        } catch {
            report("cannot start: \(error)")
            return 1
        }
        // Wait for `start` (or a stop before it).
        _ = state.wait(for: { $0.startRequested || $0.stopRequested }) { _ in true }
        var finalReason = "stopped before start"
        var guestStatus: UInt32?
        while true {
            guard let machine = state.withLock({ s -> VirtualMachine? in s.stopRequested ? nil : s.machine }) else { break }
            state.withLock { s in
                if s.started == nil { s.started = MonotonicClock.nanoseconds }
                s.runState = s.pauseReasons.isEmpty ? .running : .paused
            }
            applyPauseState(announce: true)
            state.withLock { $0.migration }?.machineStarting()
            let reason: PowerOffReason
            do { reason = try machine.run() } catch {
                finalReason = "the VM could not run: \(error)"
                break
            }
            finalReason = reason.description
            if case .guestPoweredOff(let status) = reason { guestStatus = status }
            let again = state.withLock { s -> Bool in
                let reset = (s.resetRequested || reason == .reset) && !s.stopRequested
                s.resetRequested = false
                return reset
            }
            guard again else { break }
            do {
                try rebuild()
                outbox.send(.stateChanged(StateChange(state: .running, reason: "reset", monotonicNanoseconds: MonotonicClock.nanoseconds)))
            } catch {
                finalReason = "reset failed: \(error)"
                break
            }
        }
        state.withLock { $0.runState = .stopped }
        outbox.send(.stateChanged(StateChange(state: .stopped, reason: finalReason, guestStatus: guestStatus,
                                              monotonicNanoseconds: MonotonicClock.nanoseconds)))
        outbox.close(timeoutNanoseconds: 2_000_000_000)
        for disk in state.withLock({ $0.disks }) { disk.close() }
        unlink(socketPath)
        return 0
    }

    func report(_ message: String) {
        var line = Array("vmx: \(message)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    // MARK: Connections

    private func acceptConnections() {
        while true {
            let fd = cvmfs_accept(listener.rawValue)
            guard fd >= 0 else {
                if -fd == EINTR || -fd == ECONNABORTED { continue }
                report("accept failed: errno \(-fd)")
                return
            }
            let channel = ControlChannel(socket: OwnedDescriptor(fd))
            guard let peer = try? channel.peer(), peer.uid == 0 || peer.uid == getuid() else {
                report("refused a control connection from another user")
                continue
            }
            let previous = state.withLock { s -> ControlChannel? in
                defer {
                    s.channel = channel
                    s.disconnectedSince = nil
                }
                return s.channel
            }
            if let previous { _ = Glibc.shutdown(previous.socket.rawValue, Int32(SHUT_RDWR)) }
            outbox.connect(channel)
            do {
                try NativeThread.detach(name: "vmx-control") { [self] in serve(channel) }
            } catch {
                report("cannot serve a connection: \(error)")
            }
        }
    }

    private func serve(_ channel: ControlChannel) {
        while true {
            let received: ReceivedMessage?
            do {
                received = try channel.receive()
            } catch where error.code == .malformed || error.code == .unsupportedVersion {
                outbox.send(.error(ErrorReply(code: error.code.rawValue, message: error.message, inReplyTo: 0)))
                continue
            } catch {
                received = nil
            }
            guard let received else { break }
            handle(received)
        }
        state.withLock { s in
            if s.channel === channel {
                s.channel = nil
                s.disconnectedSince = MonotonicClock.nanoseconds
            }
        }
        outbox.connect(state.withLock { $0.channel })
    }

    private func handle(_ received: ReceivedMessage) {
        let message = received.message
        switch message {
        case .hello:
            let (runState, uuid) = state.withLock { ($0.runState, $0.specification?.uuid) }
            outbox.send(.helloReply(HelloReply(vmx: version, pid: getpid(), state: runState, vmUUID: uuid)))
        case .configure(let specification):
            do {
                try configure(specification, descriptors: received.descriptors)
                outbox.send(.configured)
            } catch {
                outbox.send(.error(ErrorReply(code: "configure", message: "\(error)", inReplyTo: message.type)))
            }
        case .start:
            let accepted = state.withLock { s -> Bool in
                guard s.runState == .configured else { return false }
                s.startRequested = true
                return true
            }
            if !accepted { refuse(message, "start needs a configured VM that has not started") }
        case .powerOff:
            stopMachine()
        case .reset:
            let machine = state.withLock { s -> VirtualMachine? in
                guard s.started != nil else { return nil }
                s.resetRequested = true
                return s.machine
            }
            if let machine { machine.requestStop() } else { refuse(message, "the VM is not running") }
        case .lease(let grant):
            state.withLock { $0.leaseValidUntil = grant.validUntilMonotonicNanoseconds }
            checkLease()
        case .consoleInput(let bytes):
            state.withLock { $0.machine }?.sendConsoleInput(bytes)
        case .attachDisks(let attachment):
            do { try attach(attachment.disks, descriptors: received.descriptors) } catch {
                refuse(message, "\(error)")
            }
        case .statusRequest:
            outbox.send(.status(status()))
        case .pause:
            state.withLock { _ = $0.pauseReasons.insert(.agentRequest) }
            applyPauseState(announce: true)
        case .resume:
            state.withLock { _ = $0.pauseReasons.remove(.agentRequest) }
            applyPauseState(announce: true)
        case .announceNetwork:
            guard let machine = state.withLock({ $0.machine }) else { return refuse(message, "the VM is not configured") }
            machine.announceNetwork()
        case .setLink(let request):
            guard let machine = state.withLock({ $0.machine }) else { return refuse(message, "the VM is not configured") }
            do { try machine.setNetworkLink(request.interface, connected: request.connected) } catch { refuse(message, "\(error)") }
        case .migrateOut, .migrationHandoff, .migrationCancel, .configureIncoming, .migrateIn:
            handleMigration(received)
        case .helloReply, .configured, .error, .stateChanged, .consoleOutput, .status, .marker, .migrationProgress, .migrationReady,
             .migrationEnded, .guestHeartbeat, .networkEvent:
            refuse(message, "message type 0x\(String(message.type, radix: 16)) is sent by a VMM, not to one")
        }
    }

    func refuse(_ message: ControlMessage, _ reason: String) {
        outbox.send(.error(ErrorReply(code: "refused", message: reason, inReplyTo: message.type)))
    }

    private func status() -> StatusReport {
        state.withLock { s in
            StatusReport(state: s.runState, vmUUID: s.specification?.uuid, leaseValidUntilMonotonicNanoseconds: s.leaseValidUntil,
                         firstInstructionMonotonicNanoseconds: s.firstInstruction, startedMonotonicNanoseconds: s.started,
                         disks: s.machine?.diskStatistics.map {
                             DiskCounters(reads: UInt64($0.reads), writes: UInt64($0.writes), flushes: UInt64($0.flushes),
                                          discards: UInt64($0.discards), bytesRead: $0.bytesRead, bytesWritten: $0.bytesWritten,
                                          rejected: UInt64($0.rejectedRequests))
                         } ?? [],
                         networkInterfaces: s.machine.map { NetworkInterfaces.counters($0.networkStatistics) })
        }
    }

    // MARK: Building the VM

    private func configure(_ specification: VMSpecification, descriptors: [OwnedDescriptor]) throws(VMXProtocolError) {
        guard state.withLock({ $0.runState == .unconfigured }) else {
            throw VMXProtocolError(.rejected, "the VM is already configured")
        }
        func descriptor(_ index: Int?, _ what: String) throws(VMXProtocolError) -> OwnedDescriptor {
            guard let index, descriptors.indices.contains(index) else {
                throw VMXProtocolError(.malformed, "\(what) names descriptor \(index.map(String.init) ?? "nil"); \(descriptors.count) arrived")
            }
            return descriptors[index]
        }
        let image = try descriptor(specification.boot.imageDescriptor, "boot.imageDescriptor")
        var images = [image]
        let boot: BootSource
        switch specification.boot.kind {
        case .testGuest:
            guard let raw = specification.boot.workload, let workload = TestGuestWorkload(rawValue: raw) else {
                throw VMXProtocolError(.malformed, "boot.workload \(specification.boot.workload.map(String.init) ?? "nil") is not a test-guest workload")
            }
            boot = .testGuest(TestGuestConfiguration(imagePath: "/proc/self/fd/\(image.rawValue)", workload: workload,
                                                     arguments: specification.boot.arguments ?? []))
        case .linux:
            var initrdPath: String?
            if specification.boot.initrdDescriptor != nil {
                let initrd = try descriptor(specification.boot.initrdDescriptor, "boot.initrdDescriptor")
                images.append(initrd)
                initrdPath = "/proc/self/fd/\(initrd.rawValue)"
            }
            boot = .linux(LinuxBootConfiguration(kernelPath: "/proc/self/fd/\(image.rawValue)", initrdPath: initrdPath,
                                                 commandLine: specification.boot.commandLine ?? LinuxBootConfiguration.defaultCommandLine))
        }
        var disks: [RemoteDiskBackend] = []
        for (index, spec) in specification.disks.enumerated() {
            let disk = RemoteDiskBackend(byteCount: spec.byteCount, identifier: spec.identifier, isReadOnly: spec.readOnly)
            guard spec.descriptorIndices.allSatisfy(descriptors.indices.contains) else {
                throw VMXProtocolError(.malformed, "disks[\(index)] names descriptors outside the \(descriptors.count) that arrived")
            }
            try Self.attach(disk, spec, descriptors: descriptors, name: "disk \(index) (\(spec.identifier))")
            disks.append(disk)
        }
        let nics: [NetworkInterfaceConfiguration]
        do {
            nics = try NetworkInterfaces.configurations(specification.networkInterfaces ?? [], descriptors: descriptors) { [outbox] event in
                outbox.send(.networkEvent(NetworkInterfaces.report(event)))
            }
        } catch {
            for disk in disks { disk.close() }
            throw error
        }
        let configuration = VirtualMachineConfiguration(
            vcpuCount: specification.vcpuCount, memorySize: specification.memoryBytes, disks: disks, bootSource: boot,
            console: AgentConsole(outbox: outbox), markerObserver: { [weak self] marker in self?.observe(marker) },
            heartbeatObserver: { [weak self] count, time in self?.heartbeat(count: count, at: time) },
            networkInterfaces: nics)
        let machine: VirtualMachine
        do { machine = try VirtualMachine(configuration: configuration) } catch {
            for disk in disks { disk.close() }
            throw VMXProtocolError(.rejected, "\(error)")
        }
        state.withLock { s in
            s.specification = specification
            s.configuration = configuration
            s.machine = machine
            s.disks = disks
            s.images = images
            s.leaseValidUntil = specification.leaseValidUntilMonotonicNanoseconds
            s.runState = .configured
        }
        checkLease()
    }

    /// A new VirtualMachine for the same configuration (after a guest reset): same disks, fresh memory.
    private func rebuild() throws(HypervisorError) {
        guard let configuration = state.withLock({ $0.configuration }) else {
            throw HypervisorError(.invalidState, "no configuration to rebuild from")
        }
        let machine = try VirtualMachine(configuration: configuration)
        state.withLock { $0.machine = machine }
    }

    private func attach(_ specifications: [DiskSpecification], descriptors: [OwnedDescriptor]) throws(VMXProtocolError) {
        let disks = state.withLock { $0.disks }
        guard specifications.count == disks.count else {
            throw VMXProtocolError(.malformed, "attachDisks names \(specifications.count) disks; the VM has \(disks.count)")
        }
        for (index, spec) in specifications.enumerated() {
            guard spec.descriptorIndices.allSatisfy(descriptors.indices.contains) else {
                throw VMXProtocolError(.malformed, "disks[\(index)] names descriptors outside the \(descriptors.count) that arrived")
            }
            try Self.attach(disks[index], spec, descriptors: descriptors, name: "disk \(index)")
        }
    }

    /// Maps the queue and window of `spec` and attaches them, with its doorbells, to `disk`.
    private static func attach(_ disk: RemoteDiskBackend, _ spec: DiskSpecification, descriptors: [OwnedDescriptor],
                               name: String) throws(VMXProtocolError) {
        do {
            let queue = try DiskQueue(mapping: descriptors[spec.queueDescriptor])
            let window = try SharedMemoryRegion(mapping: descriptors[spec.windowDescriptor], expectedByteCount: Int(clamping: spec.windowBytes))
            try disk.attach(queue: queue, window: window,
                            requestDoorbell: EventDoorbell(receiving: descriptors[spec.requestDoorbellDescriptor]),
                            completionDoorbell: EventDoorbell(receiving: descriptors[spec.completionDoorbellDescriptor]))
        } catch {
            throw VMXProtocolError(.malformed, "\(name): \(error)")
        }
    }

    /// Forwards the guest's heartbeats to the agent, at most one every 100 ms.
    private func heartbeat(count: UInt64, at time: UInt64) {
        let send = lastHeartbeatSent.withLock { last -> Bool in
            guard time >= last + 100_000_000 else { return false }
            last = time
            return true
        }
        if send { outbox.send(.guestHeartbeat(GuestHeartbeat(count: count, monotonicNanoseconds: time))) }
    }

    func observe(_ marker: GuestMarker) {
        if marker.code == TestGuestABI.entryMarker && marker.vcpu == 0 {
            state.withLock { s in if s.firstInstruction == nil { s.firstInstruction = marker.monotonicNanoseconds } }
        }
        outbox.send(.marker(MarkerReport(code: marker.code, vcpu: marker.vcpu, monotonicNanoseconds: marker.monotonicNanoseconds)))
    }

    /// Powers the VM off hard: disk requests still waiting for the agent fail at once (the plug is
    /// pulled), so the I/O threads can finish and the machine stop.
    func stopMachine() {
        let (machine, disks) = state.withLock { s -> (VirtualMachine?, [RemoteDiskBackend]) in
            s.stopRequested = true
            return (s.machine, s.disks)
        }
        for disk in disks { disk.close() }
        machine?.requestStop()
    }

    // MARK: Lease

    private func watchLease() {
        while true {
            MonotonicClock.sleep(milliseconds: 5)
            if state.withLock({ $0.runState == .stopped }) { return }
            checkLease()
            let orphaned = state.withLock { s -> Bool in
                guard let since = s.disconnectedSince, s.pauseReasons.contains(.leaseExpired),
                      let specification = s.specification else { return false }
                return MonotonicClock.nanoseconds - since >= specification.orphanTimeoutMilliseconds * 1_000_000
            }
            if orphaned {
                report("no host agent and no lease for the orphan timeout: powering the VM off")
                stopMachine()
                return
            }
        }
    }

    func checkLease() {
        let changed = state.withLock { s -> Bool in
            let expired = MonotonicClock.nanoseconds >= s.leaseValidUntil
            if expired { return s.pauseReasons.insert(.leaseExpired).inserted }
            return s.pauseReasons.remove(.leaseExpired) != nil
        }
        if changed { applyPauseState(announce: true) }
    }

    /// Pauses or resumes the VM to match the pause reasons.
    func applyPauseState(announce: Bool) {
        transitions.withLock { _ in
            let (machine, reasons, runState) = state.withLock { ($0.machine, $0.pauseReasons, $0.runState) }
            guard let machine, runState == .running || runState == .paused || runState == .configured else { return }
            if reasons.isEmpty {
                guard machine.runState == .paused else { return }
                machine.resume()
                state.withLock { if $0.runState == .paused { $0.runState = .running } }
                if announce {
                    outbox.send(.stateChanged(StateChange(state: .running, reason: "resumed", monotonicNanoseconds: MonotonicClock.nanoseconds,
                                                          wallNanoseconds: MonotonicClock.wallNanoseconds)))
                }
            } else {
                guard machine.runState == .running else { return }
                let reason = reasons.map(\.rawValue).sorted().joined(separator: ", ")
                do { try machine.pause(timeoutNanoseconds: 1_000_000_000) } catch {
                    report("pause failed: \(error)")
                }
                state.withLock { if $0.runState == .running { $0.runState = .paused } }
                if announce {
                    outbox.send(.stateChanged(StateChange(state: .paused, reason: reason, monotonicNanoseconds: MonotonicClock.nanoseconds)))
                }
            }
        }
    }
}
