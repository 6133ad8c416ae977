internal import VMFSCore
internal import VMManagement
internal import VMXProtocol
public import LiveMigration
internal import SystemSupport

/// The source's part of a live migration (`docs/MIGRATION.md`): the destination agent prepares a
/// VMM, this agent connects authenticated streams and lets its VMM send the running VM; once the
/// guest is paused here and restored there, the VM's file locks are handed over on the volume in
/// one atomic step, and the destination starts the guest.
extension ManagedVM {
    /// Migrates the running VM to the host behind `peer`. Before the handoff every failure leaves
    /// the VM running here; after it, the VM runs at the destination.
    ///
    /// While it runs, every other operation on the VM is refused as busy; ``cancelMigration()``
    /// stops it before the handoff.
    func migrate(to peer: any MigrationPeer, options: MigrationOptions, progress: TaskManager.Progress?) throws(AgentError) -> MigrationStatus {
        do { try options.validate() } catch { throw AgentError(.invalidArgument, error.message, field: "options") }
        return try exclusively("migration") { () throws(AgentError) -> MigrationStatus in
            guard let (runtime, connection) = state.withLock({ s -> (Runtime, VMMConnection)? in
                guard s.power == .running, let runtime = s.runtime, let connection = runtime.connection else { return nil }
                return (runtime, connection)
            }) else {
                throw AgentError(.invalidState, "VM '\(name)' is \(power.rawValue); only a running VM can be migrated")
            }
            let volume = try datastore.volume()
            let sessionKey = StreamHandshake.makeSessionKey()
            let migrationID = StreamHandshake.makeMigrationID()
            let id = Hex.encode(migrationID)
            let migration = VMMigration(role: .source, id: id, destinationHost: "")
            self.migration.withLock { $0 = migration }
            let request = IncomingMigrationRequest(
                migrationID: id, sessionKey: Hex.encode(sessionKey), vmUUID: uuid, vmName: name, datastore: datastore.name,
                volumeUUID: "\(volume.header.uuid)", vcpuCount: runtime.files.definition.vcpuCount,
                memoryBytes: runtime.files.definition.memoryBytes, streamCount: options.streams, sourceHost: context.settings.host.name)
            let offer: IncomingMigrationOffer
            do throws(AgentError) { offer = try peer.prepareIncoming(request) } catch {
                migration.finish(.failed, message: "the destination refused: \(error.message)")
                record(.vmMigrationFailed, "VM '\(name)' was not migrated: the destination refused: \(error.message)", severity: .warning)
                throw AgentError(error.code, "the destination refused the migration of VM '\(name)': \(error.message)")
            }
            migration.state.withLock { $0.status.destinationHost = offer.destinationHost }
            record(.vmMigrationStarted, "VM '\(name)' is migrating to host \(offer.destinationHost) (migration \(id))")
            progress?.update(5)
            do throws(AgentError) {
                let ready = try copy(connection: connection, migration: migration, offer: offer, peer: peer, options: options,
                                     sessionKey: sessionKey, migrationID: migrationID)
                progress?.update(90)
                return try switchOver(runtime: runtime, connection: connection, volume: volume, migration: migration, ready: ready,
                                      offer: offer, peer: peer)
            } catch {
                let cancelled = migration.state.withLock { $0.cancelled }
                migration.finish(cancelled ? .cancelled : .failed, message: error.message)
                record(cancelled ? .vmMigrationCancelled : .vmMigrationFailed,
                       "VM '\(name)' stays on this host: its migration to \(offer.destinationHost) \(cancelled ? "was cancelled" : "failed"): \(error.message)",
                       severity: cancelled ? .info : .warning)
                // Best effort, and not waited for: the destination may be unreachable (it also gives up by itself).
                try? NativeThread.detach(name: "hostd-mig-abort") { [message = error.message] in
                    try? peer.abortIncoming(migrationID: id, reason: message)
                }
                throw error
            }
        }
    }

    /// Stops the VM's migration before its handoff (the VMM resumes the guest here).
    func cancelMigration() throws(AgentError) {
        guard let migration = migration.withLock({ $0 }), migration.role == .source,
              [.connecting, .copying].contains(migration.status.state) else {
            throw AgentError(.invalidState, "VM '\(name)' has no migration that can still be cancelled")
        }
        migration.state.withLock { $0.cancelled = true }
        try? state.withLock { $0.runtime?.connection }?.send(.migrationCancel)
    }

    /// The VM's latest migration, if any.
    var migrationStatus: MigrationStatus? { migration.withLock { $0 }?.status }

    /// Connects the streams, starts the VMM's migration and waits until the guest is paused here
    /// and restored at the destination.
    private func copy(connection: VMMConnection, migration: VMMigration, offer: IncomingMigrationOffer, peer: any MigrationPeer,
                      options: MigrationOptions, sessionKey: [UInt8], migrationID: [UInt8]) throws(AgentError) -> MigrationReadyReport {
        let host = offer.address.isEmpty ? peer.streamHost : offer.address
        var sockets: [OwnedDescriptor] = []
        var grants: [StreamGrant] = []
        for index in 0..<options.streams {
            let socket = try MigrationSockets.connect(address: host, port: offer.port, timeoutMilliseconds: 5000)
            do {
                let keys = try StreamHandshake.connect(socket: socket.rawValue, sessionKey: sessionKey, migrationID: migrationID, index: index)
                grants.append(StreamGrant(index: index, keys: keys, descriptor: index))
            } catch {
                throw AgentError(.failed, "stream \(index) to \(host):\(offer.port): \(error.message)")
            }
            sockets.append(socket)
        }
        guard !migration.state.withLock({ $0.cancelled }) else { throw AgentError(.failed, "the migration was cancelled") }
        try connection.send(.migrateOut(MigrateOutRequest(options: options, streams: grants)), descriptors: sockets.map(\.rawValue))
        for socket in sockets { socket.close() }
        migration.state.withLock { $0.status.state = .copying }
        let limit = options.timeoutSeconds * 1_000_000_000 + 60_000_000_000
        let outcome = migration.wait(timeoutNanoseconds: limit) { s -> Result<MigrationReadyReport, AgentError>? in
            if let ready = s.ready { return .success(ready) }
            if let ended = s.ended { return .failure(AgentError(.failed, ended.message ?? ended.result)) }
            return nil
        }
        switch outcome {
        case .success(let ready)?: return ready
        case .failure(let error)?: throw error
        case nil:
            try? connection.send(.migrationCancel)
            throw AgentError(.failed, "the VMM reported no end of the copy within \(limit / 1_000_000_000) s")
        }
    }

    /// Guest paused here, restored there: hands the files over. Committed → the VM runs at the
    /// destination and this VMM exits; aborted → the guest resumes here.
    private func switchOver(runtime: Runtime, connection: VMMConnection, volume: Volume, migration: VMMigration, ready: MigrationReadyReport,
                            offer: IncomingMigrationOffer, peer: any MigrationPeer) throws(AgentError) -> MigrationStatus {
        // Nothing of this host may write the files from the prepare on: the console relay stops here.
        let console = state.withLock { s -> ConsoleLog? in defer { s.console = nil }; return s.console }
        func resumeHere(_ reason: String) {
            state.withLock { $0.console = console }
            try? connection.send(.migrationHandoff(MigrationHandoff(outcome: "aborted", reason: reason)))
        }
        let handles = [runtime.files.vmx] + runtime.files.disks.map(\.extent) + [runtime.files.log]
        let handover: LockHandover
        do { handover = try volume.prepareLockHandover(handles, to: offer.taker) } catch {
            resumeHere("the lock handover could not be prepared: \(error.message)")
            throw AgentError(.storageUnavailable, "preparing the lock handover: \(error.message)")
        }
        var outcome: LockHandoverOutcome
        var resumedWall: Int64?
        var failure = "the destination refused the handoff"
        do {
            let result = try peer.commitIncoming(migrationID: migration.id, handover: handover)
            outcome = result.outcome
            resumedWall = result.resumedWallNanoseconds
        } catch {
            // The destination may or may not have committed: the primary record decides.
            failure = error.message
            do { outcome = try volume.abortLockHandover(handover) } catch {
                throw AgentError(.storageUnavailable, "the handoff failed (\(failure)) and the locks could not be taken back: \(error.message)")
            }
        }
        if outcome == .aborted {
            do { _ = try volume.abortLockHandover(handover) } catch {
                throw AgentError(.storageUnavailable, "taking the locks of VM '\(name)' back: \(error.message)")
            }
            resumeHere(failure)
            throw AgentError(.failed, "the handoff to \(offer.destinationHost) did not happen (\(failure)); VM '\(name)' runs on here")
        }
        // The destination owns the VM: this host serves nothing more of it and its VMM ends.
        FaultInjection.stall(FaultInjection.stallAfterHandoffMilliseconds)
        for disk in runtime.disks { disk.stop() }
        state.withLock { s in
            s.runtime?.expectingExit = true
            s.power = .stopping
        }
        try? connection.send(.migrationHandoff(MigrationHandoff(outcome: "committed")))
        _ = state.wait(until: MonotonicClock.nanoseconds + 120_000_000_000, for: { $0.runtime == nil }) { _ in true }
        let ended = migration.wait(timeoutNanoseconds: 1_000_000_000) { $0.ended }
        let downtime = resumedWall.map { Double($0 - ready.pausedWallNanoseconds) / 1e6 }
        state.withLock { s in
            s.power = .poweredOff
            s.reason = "migrated to host \(offer.destinationHost)"
        }
        migration.finish(.completed, message: ended?.result == "postCopyFailed" ? ended?.message : nil, downtimeMilliseconds: downtime)
        let status = migration.status
        let p = status.progress
        record(.vmMigrated, "VM '\(name)' migrated to host \(offer.destinationHost): \(p.round + 1) rounds, \(p.transferredBytes) bytes sent "
               + "(\(p.dataPages) data pages, \(p.zeroPages) zero pages), downtime \(downtime.map { String(Int($0 * 1000)) + " µs" } ?? "unknown")"
               + (ready.postCopy ? ", post-copy" : ""))
        return status
    }
}
