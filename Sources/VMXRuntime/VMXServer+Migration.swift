internal import Hypervisor
internal import VMXProtocol
internal import LiveMigration
internal import SystemSupport
#if canImport(Glibc)
internal import Glibc
#endif

/// A VMM's part in a live migration (`docs/MIGRATION.md`): the source runs ``MigrationSource``
/// and waits for the agents' handoff; the destination builds the machine from `configureIncoming`,
/// runs ``MigrationDestination`` and starts the restored guest when the agent says `start`.
final class VMXMigration: Sendable {
    enum Role: Sendable {
        case source(MigrationSource)
        case destination(MigrationDestination)
    }

    private struct State {
        var handoff: MigrationHandoff?
        var ready = false
        var cancelled = false
        var started = false
        /// Destination: every page is here (pre-copy at start, post-copy once the last page arrived).
        var settled = false
    }

    let role: Role
    private let state = Monitor(State())
    private let outbox: Outbox

    init(role: Role, outbox: Outbox) {
        self.role = role
        self.outbox = outbox
    }

    /// Still under way: a source until it ends, a destination until it has every page.
    var isActive: Bool {
        guard case .destination = role else { return true }
        return !state.withLock { $0.settled }
    }

    /// The agent decided what became of the VM's files (source).
    func handOff(_ handoff: MigrationHandoff) { state.withLock { $0.handoff = handoff } }

    /// Cancel: before the switchover the source stops; while it waits for the handoff it resumes.
    func cancel() {
        let waiting = state.withLock { s -> Bool in
            s.cancelled = true
            if s.ready && s.handoff == nil { s.handoff = MigrationHandoff(outcome: "aborted", reason: "cancelled") }
            return s.ready
        }
        if !waiting, case .source(let source) = role { source.cancel() }
    }

    /// Source: migrate, wait for the handoff, then finish (committed) or resume here (aborted).
    func runSource(_ source: MigrationSource, stop: @escaping @Sendable () -> Void) {
        let ready: SwitchoverReady
        do {
            ready = try source.run()
        } catch {
            outbox.send(.migrationEnded(MigrationEndReport(result: "failed", code: error.code.rawValue, message: error.message,
                                                           progress: source.progress)))
            return
        }
        state.withLock { $0.ready = true }
        outbox.send(.migrationReady(MigrationReadyReport(ready: ready, progress: source.progress)))
        let handoff = state.wait(for: { $0.handoff != nil }) { $0.handoff } ?? nil
        guard handoff?.outcome == "committed" else {
            let reason = handoff?.reason ?? "the handoff was aborted"
            source.resumeAfterFailure(reason)
            outbox.send(.migrationEnded(MigrationEndReport(result: "failed", code: "aborted", message: reason, postCopy: ready.postCopy,
                                                           progress: source.progress)))
            return
        }
        do {
            try source.finishAfterHandoff()
            outbox.send(.migrationEnded(MigrationEndReport(result: "completed", postCopy: ready.postCopy, progress: source.progress)))
        } catch {
            outbox.send(.migrationEnded(MigrationEndReport(result: "postCopyFailed", code: error.code.rawValue, message: error.message,
                                                           postCopy: true, progress: source.progress)))
        }
        // The guest lives at the destination now: this VMM ends without running it again.
        stop()
    }

    /// Destination: receive until the state is restored.
    func runDestination(_ destination: MigrationDestination, restored: @escaping @Sendable (VirtualMachine) -> Void,
                        failed: @escaping @Sendable () -> Void) {
        do {
            let machine = try destination.receive()
            restored(machine)
            let pages = destination.receivedPages
            var progress = MigrationProgress(phase: destination.isPostCopy ? .postCopy : .completed)
            progress.dataPages = pages.data
            progress.zeroPages = pages.zero
            outbox.send(.migrationEnded(MigrationEndReport(result: "received", postCopy: destination.isPostCopy, progress: progress)))
        } catch {
            destination.close()
            outbox.send(.migrationEnded(MigrationEndReport(result: "failed", code: error.code.rawValue, message: error.message)))
            failed()
        }
    }

    /// The restored machine is about to run (destination): post-copy starts resolving faults,
    /// and the agent learns the moment (its downtime measurement ends here).
    func machineStarting() {
        guard case .destination(let destination) = role, !state.withLock({ s -> Bool in defer { s.started = true }; return s.started }) else {
            return
        }
        outbox.send(.stateChanged(StateChange(state: .running, reason: "migrated in", monotonicNanoseconds: MonotonicClock.nanoseconds,
                                              wallNanoseconds: MonotonicClock.wallNanoseconds)))
        guard destination.isPostCopy else {
            destination.close()
            state.withLock { $0.settled = true }
            return
        }
        do { try destination.startPostCopy() } catch {
            outbox.send(.migrationEnded(MigrationEndReport(result: "postCopyLost", code: error.code.rawValue, message: error.message, postCopy: true)))
            return
        }
        try? NativeThread.detach(name: "vmx-postcopy") { [outbox] in
            let (complete, reason) = destination.waitForPostCopy()
            destination.close()
            self.state.withLock { $0.settled = complete }
            outbox.send(.migrationEnded(MigrationEndReport(result: complete ? "postCopyComplete" : "postCopyLost", message: reason,
                                                           postCopy: true)))
        }
    }
}

extension VMXServer {
    func handleMigration(_ received: ReceivedMessage) {
        let message = received.message
        switch message {
        case .migrateOut(let request):
            do { try startSource(request, descriptors: received.descriptors) } catch { refuse(message, "\(error)") }
        case .migrationHandoff(let handoff):
            guard let migration = state.withLock({ $0.migration }) else { return refuse(message, "no migration is in progress") }
            migration.handOff(handoff)
        case .migrationCancel:
            state.withLock { $0.migration }?.cancel()
        case .configureIncoming(let specification):
            do {
                try configureIncoming(specification, descriptors: received.descriptors)
                outbox.send(.configured)
            } catch {
                outbox.send(.error(ErrorReply(code: "configure", message: "\(error)", inReplyTo: message.type)))
            }
        case .migrateIn(let request):
            do { try startDestination(request, descriptors: received.descriptors) } catch { refuse(message, "\(error)") }
        default:
            break
        }
    }

    private func streams(_ grants: [StreamGrant], _ descriptors: [OwnedDescriptor], stall: UInt64) throws(VMXProtocolError) -> [MigrationStream] {
        guard !grants.isEmpty, grants.count <= 16 else { throw VMXProtocolError(.malformed, "a migration takes 1 – 16 streams, \(grants.count) given") }
        var result: [MigrationStream] = []
        for (position, grant) in grants.enumerated() {
            guard grant.index == position, descriptors.indices.contains(grant.descriptor) else {
                throw VMXProtocolError(.malformed, "stream \(position) names descriptor \(grant.descriptor) of \(descriptors.count), index \(grant.index)")
            }
            do {
                result.append(try MigrationStream(socket: descriptors[grant.descriptor], keys: try grant.keys(), index: position,
                                                  stallTimeoutMilliseconds: Int32(clamping: stall)))
            } catch let error as VMXProtocolError {
                throw error
            } catch {
                throw VMXProtocolError(.malformed, "stream \(position): \(error)")
            }
        }
        return result
    }

    private func startSource(_ request: MigrateOutRequest, descriptors: [OwnedDescriptor]) throws(VMXProtocolError) {
        do { try request.options.validate() } catch { throw VMXProtocolError(.malformed, error.message) }
        let streams = try streams(request.streams, descriptors, stall: request.options.stallTimeoutMilliseconds)
        let (machine, uuid, busy) = state.withLock { s in (s.machine, s.specification?.uuid, s.migration?.isActive ?? false) }
        guard let machine, let uuid, !busy,
              state.withLock({ $0.runState == .running || $0.runState == .paused }) else {
            throw VMXProtocolError(.rejected, busy ? "a migration is already in progress" : "only a running VM can be migrated")
        }
        let guest = GuestPauseControl(
            pause: { [weak self] () throws(HypervisorError) in
                guard let self else { return }
                self.state.withLock { _ = $0.pauseReasons.insert(.migration) }
                self.applyPauseState(announce: false)
                // Waits until every vCPU is out (the pause above gives up after its timeout).
                try machine.pause(timeoutNanoseconds: 1_000_000_000)
            },
            resume: { [weak self] in
                guard let self else { return }
                self.state.withLock { _ = $0.pauseReasons.remove(.migration) }
                self.applyPauseState(announce: false)
            })
        let source = MigrationSource(machine: machine, streams: streams, options: request.options, vmUUID: uuid, guest: guest) { [outbox] progress in
            outbox.send(.migrationProgress(progress))
        }
        let migration = VMXMigration(role: .source(source), outbox: outbox)
        state.withLock { $0.migration = migration }
        do {
            try NativeThread.detach(name: "vmx-migrate") { [weak self] in
                migration.runSource(source) { [weak self] in self?.stopMachine() }
                self?.state.withLock { s in if s.migration === migration { s.migration = nil } }
            }
        } catch {
            state.withLock { $0.migration = nil }
            throw VMXProtocolError(.rejected, "cannot start the migration thread: \(error)")
        }
    }

    /// Builds the machine a migration will restore: the same devices and disks (their channels
    /// come later, with `attachDisks`), and the boot images for a later guest reset.
    private func configureIncoming(_ specification: IncomingSpecification, descriptors: [OwnedDescriptor]) throws(VMXProtocolError) {
        guard state.withLock({ $0.runState == .unconfigured }) else { throw VMXProtocolError(.rejected, "the VM is already configured") }
        guard descriptors.indices.contains(specification.boot.imageDescriptor) else {
            throw VMXProtocolError(.malformed, "boot.imageDescriptor names descriptor \(specification.boot.imageDescriptor); \(descriptors.count) arrived")
        }
        let image = descriptors[specification.boot.imageDescriptor]
        var images = [image]
        let boot: BootSource
        switch specification.boot.kind {
        case .testGuest:
            guard let raw = specification.boot.workload, let workload = TestGuestWorkload(rawValue: raw) else {
                throw VMXProtocolError(.malformed, "boot.workload is not a test-guest workload")
            }
            boot = .testGuest(TestGuestConfiguration(imagePath: "/proc/self/fd/\(image.rawValue)", workload: workload,
                                                     arguments: specification.boot.arguments ?? []))
        case .linux:
            var initrdPath: String?
            if let index = specification.boot.initrdDescriptor {
                guard descriptors.indices.contains(index) else { throw VMXProtocolError(.malformed, "boot.initrdDescriptor \(index) did not arrive") }
                images.append(descriptors[index])
                initrdPath = "/proc/self/fd/\(descriptors[index].rawValue)"
            }
            boot = .linux(LinuxBootConfiguration(kernelPath: "/proc/self/fd/\(image.rawValue)", initrdPath: initrdPath,
                                                 commandLine: specification.boot.commandLine ?? LinuxBootConfiguration.defaultCommandLine))
        }
        let disks = specification.disks.map { RemoteDiskBackend(byteCount: $0.byteCount, identifier: $0.identifier, isReadOnly: $0.readOnly) }
        let configuration = VirtualMachineConfiguration(
            vcpuCount: specification.vcpuCount, memorySize: specification.memoryBytes, disks: disks, bootSource: boot,
            console: AgentConsole(outbox: outbox), markerObserver: { [weak self] marker in self?.observe(marker) })
        let machine: VirtualMachine
        do { machine = try VirtualMachine.restorable(configuration: configuration) } catch {
            throw VMXProtocolError(.rejected, "\(error)")
        }
        let vmSpecification = VMSpecification(
            uuid: specification.uuid, name: specification.name, vcpuCount: specification.vcpuCount, memoryBytes: specification.memoryBytes,
            boot: specification.boot, disks: [], orphanTimeoutMilliseconds: specification.orphanTimeoutMilliseconds,
            leaseValidUntilMonotonicNanoseconds: specification.leaseValidUntilMonotonicNanoseconds)
        state.withLock { s in
            s.specification = vmSpecification
            s.configuration = configuration
            s.disks = disks
            s.images = images
            s.leaseValidUntil = specification.leaseValidUntilMonotonicNanoseconds
            s.runState = .incoming
            s.pendingMachine = machine
        }
    }

    private func startDestination(_ request: MigrateInRequest, descriptors: [OwnedDescriptor]) throws(VMXProtocolError) {
        let (machine, uuid, runState) = state.withLock { ($0.pendingMachine, $0.specification?.uuid, $0.runState) }
        guard runState == .incoming, let machine, let uuid else {
            throw VMXProtocolError(.rejected, "migrateIn needs a VM configured with configureIncoming")
        }
        let destination = MigrationDestination(machine: machine, streams: try streams(request.streams, descriptors, stall: 5000), vmUUID: uuid)
        let migration = VMXMigration(role: .destination(destination), outbox: outbox)
        state.withLock { $0.migration = migration }
        do {
            try NativeThread.detach(name: "vmx-receive") { [weak self] in
                migration.runDestination(destination, restored: { [weak self] restored in
                    self?.state.withLock { s in
                        s.machine = restored
                        s.pendingMachine = nil
                        s.runState = .configured
                    }
                    self?.checkLease()
                }, failed: { [weak self] in self?.stopMachine() })
            }
        } catch {
            throw VMXProtocolError(.rejected, "cannot start the receiving thread: \(error)")
        }
    }
}
