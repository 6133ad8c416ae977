public import LiveMigration
internal import SystemSupport
public import VMFSCore

/// Live migration through the agent (`docs/MIGRATION.md`): the source's operations (migrate,
/// cancel, status) and the destination's (prepare, commit, abort), which the source agent calls
/// through a ``MigrationPeer``.
extension HostAgent {
    /// Starts a task that migrates the running VM to the host behind `peer`; the task's result is the VM's UUID.
    public func migrate(_ reference: String, to peer: any MigrationPeer, options: MigrationOptions) throws(AgentError) -> AgentTask {
        let vm = try lookup(reference)
        do { try options.validate() } catch { throw AgentError(.invalidArgument, error.message, field: "options") }
        guard vm.power == .running else { throw AgentError(.invalidState, "VM '\(vm.name)' is \(vm.power.rawValue); only a running VM can be migrated") }
        return context.tasks.start(operation: "migrate", target: vm.uuid) { (progress) throws(AgentError) -> String? in
            _ = try vm.migrate(to: peer, options: options, progress: progress)
            return vm.uuid
        }
    }

    /// Cancels the VM's migration (before its handoff only).
    public func cancelMigration(_ reference: String) throws(AgentError) { try lookup(reference).cancelMigration() }

    /// The VM's latest migration on this host.
    public func migrationStatus(_ reference: String) throws(AgentError) -> MigrationStatus {
        let vm = try lookup(reference)
        guard let status = vm.migrationStatus else { throw AgentError(.notFound, "VM '\(vm.name)' has not been migrated by this host") }
        return status
    }

    /// Destination: checks and prepares (registering the VM here if it is not yet).
    public func prepareIncoming(_ request: IncomingMigrationRequest) throws(AgentError) -> IncomingMigrationOffer {
        let vm: ManagedVM
        if let known = self.vm(uuid: request.vmUUID.lowercased()) {
            vm = known
        } else {
            vm = try register(datastore: request.datastore, vm: request.vmName)
            guard vm.uuid == request.vmUUID.lowercased() else {
                throw AgentError(.invalidArgument, "'\(request.vmName).vmx' on '\(request.datastore)' is VM \(vm.uuid), not \(request.vmUUID)", field: "vmUUID")
            }
        }
        return try vm.prepareIncoming(request)
    }

    /// Destination: the handoff.
    public func commitIncoming(migrationID: String, handover: LockHandover) throws(AgentError) -> IncomingCommitResult {
        let (vm, migration) = try incoming(migrationID)
        return try vm.commitIncoming(handover, migration: migration)
    }

    /// Destination: the source gave up before the handoff.
    public func abortIncoming(migrationID: String, reason: String) throws(AgentError) {
        let (vm, migration) = try incoming(migrationID)
        vm.failIncoming(migration, "the source gave up: \(reason)")
    }

    private func incoming(_ migrationID: String) throws(AgentError) -> (ManagedVM, VMMigration) {
        for vm in allVMs {
            if let migration = vm.migration.withLock({ $0 }), migration.role == .destination, migration.id == migrationID {
                return (vm, migration)
            }
        }
        throw AgentError(.notFound, "no incoming migration \(migrationID) on this host", field: "migration")
    }
}

/// A peer that is another agent of this process (tests, and one agent migrating between its own
/// volumes is not a thing): calls its operations directly; streams go to `streamHost`.
public struct LocalMigrationPeer: MigrationPeer {
    public let agent: HostAgent
    public let streamHost: String

    public init(agent: HostAgent, streamHost: String = "127.0.0.1") {
        self.agent = agent
        self.streamHost = streamHost
    }

    public func prepareIncoming(_ request: IncomingMigrationRequest) throws(AgentError) -> IncomingMigrationOffer {
        try agent.prepareIncoming(request)
    }

    public func commitIncoming(migrationID: String, handover: LockHandover) throws(AgentError) -> IncomingCommitResult {
        try agent.commitIncoming(migrationID: migrationID, handover: handover)
    }

    public func abortIncoming(migrationID: String, reason: String) throws(AgentError) {
        try agent.abortIncoming(migrationID: migrationID, reason: reason)
    }
}
