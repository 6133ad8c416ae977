internal import VMFSCore
internal import VMManagement
internal import VMXProtocol
internal import LiveMigration
internal import SystemSupport
#if canImport(Glibc)
internal import Glibc
#endif

/// The destination's part of a live migration (`docs/MIGRATION.md`): a VMM with a restorable
/// machine that receives the VM's memory and state, then — once the lock handover on the volume
/// committed — the VM's files, disk channels, lease and `start`.
extension ManagedVM {
    /// How long the streams may take to connect and pass their handshake.
    static let streamConnectNanoseconds: UInt64 = 30_000_000_000

    /// Checks that this host can take the VM, builds its incoming VMM and listens for the streams.
    /// Nothing has moved when this throws.
    func prepareIncoming(_ request: IncomingMigrationRequest) throws(AgentError) -> IncomingMigrationOffer {
        guard let sessionKey = Hex.decode(request.sessionKey), sessionKey.count == 32 else {
            throw AgentError(.invalidArgument, "sessionKey must be 64 hex digits", field: "sessionKey")
        }
        guard let migrationID = Hex.decode(request.migrationID), migrationID.count == 16 else {
            throw AgentError(.invalidArgument, "migrationID must be 32 hex digits", field: "migrationID")
        }
        guard (1...16).contains(request.streamCount) else {
            throw AgentError(.invalidArgument, "streamCount is \(request.streamCount); it must be 1 – 16", field: "streamCount")
        }
        try state.withLock { (s) throws(AgentError) in
            if let running = s.operation { throw AgentError(.busy, "VM '\(name)' is busy: \(running) is in progress") }
            guard !s.power.isActive else { throw AgentError(.invalidState, "VM '\(name)' is \(s.power.rawValue) on this host") }
            s.operation = "incoming migration"
            s.power = .starting
            s.reason = "migrating in from \(request.sourceHost)"
        }
        let migration = VMMigration(role: .destination, id: request.migrationID, destinationHost: context.settings.host.name)
        self.migration.withLock { $0 = migration }
        do throws(AgentError) {
            let volume = try datastore.volume()
            guard "\(volume.header.uuid)" == request.volumeUUID else {
                throw AgentError(.invalidArgument, "datastore '\(datastore.name)' here is volume \(volume.header.uuid); the VM lives on \(request.volumeUUID)",
                                 field: "volumeUUID")
            }
            guard let taker = volume.lockIdentity else { throw AgentError(.storageUnavailable, "this host holds no slot on '\(datastore.name)'") }
            let available = HostAgent.memoryInfo().available
            guard request.memoryBytes <= available else {
                throw AgentError(.invalidState, "VM '\(name)' needs \(request.memoryBytes) bytes of memory; host \(context.settings.host.name) has \(available) available")
            }
            let definition = try Self.readDefinition(name, on: volume)
            guard definition.vcpuCount == request.vcpuCount, definition.memoryBytes == request.memoryBytes else {
                throw AgentError(.invalidArgument, "the source migrates \(request.vcpuCount) vCPUs and \(request.memoryBytes) bytes; '\(name).vmx' says \(definition.vcpuCount) and \(definition.memoryBytes)")
            }
            var disks: [IncomingSpecification.Disk] = []
            for (index, disk) in definition.disks.enumerated() {
                let descriptor = try Self.readDescriptor(disk, on: volume)
                disks.append(IncomingSpecification.Disk(identifier: Self.diskIdentifier(name, index), byteCount: descriptor.byteCount, readOnly: false))
            }
            let images = try BootImages.load(definition: definition, volume: volume, client: client)
            let socketPath = "\(context.settings.vmRunDirectory)/\(uuid).sock"
            unlink(socketPath)
            let process = try VMMProcess.spawn(executable: context.settings.vmxPath, socketPath: socketPath,
                                               logPath: "\(context.settings.vmRunDirectory)/\(uuid).vmx.log")
            do throws(AgentError) {
                let connection = try connect(try VMMConnection.connect(socketPath: socketPath, timeoutNanoseconds: 10_000_000_000))
                _ = try connection.request(.hello(HelloRequest(agent: "vmhostd", host: context.settings.host.name)),
                                           timeoutNanoseconds: 5_000_000_000) { if case .helloReply = $0 { true } else { false } }
                let specification = IncomingSpecification(
                    uuid: uuid, name: name, vcpuCount: definition.vcpuCount, memoryBytes: definition.memoryBytes,
                    boot: Self.bootSpecification(definition, imageCount: images.descriptors.count), disks: disks,
                    orphanTimeoutMilliseconds: context.settings.orphanTimeoutMilliseconds,
                    leaseValidUntilMonotonicNanoseconds: volume.writeDeadline ?? 0)
                _ = try connection.request(.configureIncoming(specification), descriptors: images.descriptors.map(\.rawValue),
                                           timeoutNanoseconds: 60_000_000_000) { if case .configured = $0 { true } else { false } }
                let (listener, port) = try MigrationSockets.listen(address: "0.0.0.0")
                let session = IncomingSession(request: request, process: process, connection: connection, socketPath: socketPath, listener: listener)
                migration.state.withLock { $0.incoming = session }
                try acceptStreams(session, migration: migration, sessionKey: sessionKey, migrationID: migrationID)
                record(.vmMigrationStarted, "VM '\(name)' is migrating in from host \(request.sourceHost) (migration \(request.migrationID))")
                return IncomingMigrationOffer(address: "", port: port, taker: taker, destinationHost: context.settings.host.name)
            } catch {
                process.kill()
                unlink(socketPath)
                throw error
            }
        } catch {
            endIncoming(migration, power: .poweredOff, reason: "incoming migration refused: \(error.message)")
            throw error
        }
    }

    /// Accepts the streams on a thread of its own, checks each one's handshake, and hands them to the VMM.
    private func acceptStreams(_ session: IncomingSession, migration: VMMigration, sessionKey: [UInt8], migrationID: [UInt8]) throws(AgentError) {
        let count = session.request.streamCount
        do {
            try NativeThread.detach(name: "hostd-mig-accept") { [weak self] in
                let deadline = MonotonicClock.nanoseconds + Self.streamConnectNanoseconds
                var sockets: [OwnedDescriptor?] = Array(repeating: nil, count: count)
                var keys: [StreamKeys?] = Array(repeating: nil, count: count)
                while sockets.contains(where: { $0 == nil }) {
                    guard let socket = MigrationSockets.accept(session.listener, deadline: deadline) else {
                        self?.failIncoming(migration, "the source connected \(sockets.compactMap { $0 }.count) of \(count) streams in time")
                        return
                    }
                    // A connection that fails the handshake (a stranger, a replay) is dropped; the real ones may still come.
                    guard let (index, streamKeys) = try? StreamHandshake.accept(socket: socket.rawValue, sessionKey: sessionKey,
                                                                                  migrationID: migrationID, streamCount: count),
                          sockets[index] == nil else { continue }
                    sockets[index] = socket
                    keys[index] = streamKeys
                }
                session.listener.close()
                let grants = (0..<count).map { StreamGrant(index: $0, keys: keys[$0]!, descriptor: $0) }
                do throws(AgentError) {
                    try session.connection.send(.migrateIn(MigrateInRequest(streams: grants)), descriptors: sockets.map { $0!.rawValue })
                } catch {
                    self?.failIncoming(migration, "cannot hand the streams to the VMM: \(error.message)")
                }
            }
        } catch {
            throw AgentError(.failed, "cannot start a thread for the migration streams: \(error)")
        }
    }

    /// Destination: the VMM gave up receiving (a stream stalled or the source aborted) before the handoff.
    func incomingMessage(_ message: ControlMessage) {
        guard case .migrationEnded(let ended) = message, ended.result == "failed",
              let migration = migration.withLock({ $0 }), migration.role == .destination else { return }
        try? NativeThread.detach(name: "hostd-mig-fail") { [weak self] in
            self?.failIncoming(migration, ended.message ?? "the VMM stopped receiving")
        }
    }

    /// Destination: the incoming VMM's control connection closed (it died) before the handoff.
    func incomingConnectionClosed(_ channel: ControlChannel) {
        guard let migration = migration.withLock({ $0 }), migration.role == .destination,
              migration.state.withLock({ $0.incoming?.connection.channel === channel }) else { return }
        try? NativeThread.detach(name: "hostd-mig-fail") { [weak self] in
            self?.failIncoming(migration, "the receiving VMM went away")
        }
    }

    /// The incoming migration failed before the handoff (streams, VMM): the VMM goes away.
    func failIncoming(_ migration: VMMigration, _ reason: String) {
        guard self.migration.withLock({ $0 === migration }), migration.state.withLock({ $0.incoming }) != nil else { return }
        endIncoming(migration, power: .poweredOff, reason: "incoming migration failed: \(reason)")
        record(.vmMigrationFailed, "VM '\(name)': the incoming migration \(migration.id) failed: \(reason)", severity: .warning)
    }

    /// Drops the incoming VMM (if any) and ends the incoming operation.
    func endIncoming(_ migration: VMMigration, power: VMPowerState, reason: String) {
        if let session = migration.state.withLock({ s -> IncomingSession? in defer { s.incoming = nil }; return s.incoming }) {
            session.process.kill()
            session.listener.close()
            session.connection.channel.socket.close()
            unlink(session.socketPath)
        }
        migration.finish(.failed, message: reason)
        state.withLock { s in
            s.operation = nil
            s.power = power
            s.reason = reason
        }
    }

    /// The handoff at the destination: commits the lock handover (the one atomic step); when this
    /// host won, opens the VM's files (their locks are now this host's), gives the VMM its disks
    /// and lease and starts the restored guest.
    func commitIncoming(_ handover: LockHandover, migration: VMMigration) throws(AgentError) -> IncomingCommitResult {
        guard let session = migration.state.withLock({ $0.incoming }) else {
            throw AgentError(.invalidState, "migration \(migration.id) of VM '\(name)' is not waiting for its handoff here")
        }
        // The VMM restored the state before the source asked for the handoff; its report may still be on its way.
        let received = migration.wait(timeoutNanoseconds: 10_000_000_000) { $0.ended }
        guard received?.result == "received" else {
            endIncoming(migration, power: .poweredOff, reason: "the VMM did not restore the VM: \(received?.message ?? "no report")")
            return IncomingCommitResult(outcome: .aborted)
        }
        let volume = try datastore.volume()
        let outcome: LockHandoverOutcome
        do { outcome = try volume.commitLockHandover(handover) } catch {
            throw AgentError(.storageUnavailable, "committing the lock handover of VM '\(name)': \(error.message)")
        }
        guard outcome == .committed else {
            endIncoming(migration, power: .poweredOff, reason: "the source kept VM '\(name)'")
            return IncomingCommitResult(outcome: .aborted)
        }
        // From here on the VM is this host's: it runs here or nowhere.
        migration.state.withLock { $0.incoming = nil }
        session.listener.close()
        do throws(AgentError) {
            try startMigratedIn(session, volume: volume)
        } catch {
            session.process.kill()
            unlink(session.socketPath)
            migration.finish(.failed, message: error.message)
            state.withLock { s in
                s.operation = nil
                s.power = .crashed
                s.reason = "migrated in but could not start: \(error.message)"
            }
            record(.vmCrashed, "VM '\(name)' was handed over to this host but could not start: \(error.message)", severity: .error)
            throw error
        }
        let resumed = migration.wait(timeoutNanoseconds: 5_000_000_000) { $0.resumedWall }
        migration.finish(.completed)
        state.withLock { $0.operation = nil }
        record(.vmMigratedIn, "VM '\(name)' migrated in from host \(session.request.sourceHost) and runs here (migration \(migration.id))")
        return IncomingCommitResult(outcome: .committed, resumedWallNanoseconds: resumed)
    }

    private func startMigratedIn(_ session: IncomingSession, volume: Volume) throws(AgentError) {
        let files: VMFileSet
        do { files = try VMFileSet.open(volume: volume, name: name, client: client) } catch { throw Self.agentError(error) }
        var disks: [DiskServer] = []
        do throws(AgentError) {
            try makeDiskServers(files, into: &disks)
            let console = ConsoleLog(handle: files.log, fileCapacity: context.settings.consoleLogCapacity)
            console.note("\(name) migrated in from host \(session.request.sourceHost) to host \(context.settings.host.name) at \(formatWallTime(MonotonicClock.wallNanoseconds))")
            let lease = volume.writeDeadline ?? 0
            state.withLock { s in
                s.console = console
                s.runtime = Runtime(files: files, process: session.process, connection: session.connection, disks: disks,
                                    socketPath: session.socketPath, leaseSent: lease)
                s.poweredOnWall = MonotonicClock.wallNanoseconds
                s.poweredOnMonotonic = MonotonicClock.nanoseconds
                s.reason = nil
            }
            try attach(disks, to: session.connection)
            try session.connection.send(.lease(LeaseGrant(validUntilMonotonicNanoseconds: lease)))
            try RuntimeRecord(vmUUID: uuid, vmName: name, datastore: datastore.name, pid: session.process.pid,
                              pidStartTicks: session.process.startTicks, socketPath: session.socketPath,
                              poweredOnNanoseconds: MonotonicClock.wallNanoseconds)
                .save(directory: context.settings.vmRunDirectory)
            watch(session.process)
            state.withLock { $0.power = .running }
            try session.connection.send(.start)
        } catch {
            for disk in disks { disk.stop() }
            state.withLock { $0.runtime = nil }
            files.close()
            throw error
        }
    }

    /// The VM's definition as its `.vmx` says, read without its lock (the source holds it).
    static func readDefinition(_ name: String, on volume: Volume) throws(AgentError) -> VirtualMachineDefinition {
        let fileName = "\(name).vmx"
        do {
            let text = String(decoding: try VolumeInspector(device: volume.device).contents(of: fileName), as: UTF8.self)
            return try VirtualMachineDefinition(vmx: VMXFile(parsing: text, fileName: fileName), fileName: fileName)
        } catch let error as VMFSError {
            throw AgentError(error.code == .notFound ? .notFound : .storageUnavailable, "cannot read '\(fileName)': \(error.message)")
        } catch {
            throw AgentError(.invalidArgument, "'\(fileName)': \(error)")
        }
    }

    /// A disk descriptor (`.vmdk`), read without a lock.
    static func readDescriptor(_ fileName: String, on volume: Volume) throws(AgentError) -> VMDKDescriptor {
        do {
            let text = String(decoding: try VolumeInspector(device: volume.device).contents(of: fileName), as: UTF8.self)
            return try VMDKDescriptor(parsing: text, fileName: fileName)
        } catch let error as VMFSError {
            throw AgentError(error.code == .notFound ? .notFound : .storageUnavailable, "cannot read '\(fileName)': \(error.message)")
        } catch {
            throw AgentError(.invalidArgument, "'\(fileName)': \(error)")
        }
    }
}
