import Foundation
import HostAgent
import HostAgentAPI
import LiveMigration
import OpenAPIRuntime
import VMFSCore

/// Live migration (`docs/MIGRATION.md`): the source's operations and the agent-to-agent ones.
extension APIHandler {
    func migrateVM(_ input: Operations.MigrateVM.Input) async throws -> Operations.MigrateVM.Output {
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let options = try Self.options(request.options)
        let reference = input.path.vm
        let runDirectory = agent.context.settings.runDirectory
        let task = try await blocking { [agent] () throws(AgentError) in
            var trusted: String?
            if let pem = request.caCertificate {
                let path = "\(runDirectory)/migration-ca-\(UUID().uuidString).pem"
                guard FileManager.default.createFile(atPath: path, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o600]) else {
                    throw AgentError(.failed, "cannot keep the destination's certificate in \(runDirectory)")
                }
                trusted = path
            }
            let peer = try HTTPMigrationPeer(destination: request.destination, token: request.token, trustedCertificate: trusted,
                                             insecure: request.insecure ?? false, ownsCertificate: trusted != nil)
            return try agent.migrate(reference, to: peer, options: options)
        }
        return .accepted(.init(body: .json(Conversions.task(task))))
    }

    func getVMMigration(_ input: Operations.GetVMMigration.Input) async throws -> Operations.GetVMMigration.Output {
        let reference = input.path.vm
        let status = try await blocking { [agent] () throws(AgentError) in try agent.migrationStatus(reference) }
        return .ok(.init(body: .json(Self.convert(status))))
    }

    func cancelVMMigration(_ input: Operations.CancelVMMigration.Input) async throws -> Operations.CancelVMMigration.Output {
        let reference = input.path.vm
        try await blocking { [agent] () throws(AgentError) in try agent.cancelMigration(reference) }
        return .noContent(.init())
    }

    func prepareIncomingMigration(_ input: Operations.PrepareIncomingMigration.Input) async throws -> Operations.PrepareIncomingMigration.Output {
        guard case .json(let body) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let memory = try Validation.nonNegative(body.memoryBytes, field: "memoryBytes") ?? 0
        guard (1...254).contains(body.vcpus) else { throw AgentError(.invalidArgument, "vcpus is \(body.vcpus); it must be 1 – 254", field: "vcpus") }
        let request = IncomingMigrationRequest(
            migrationID: body.migrationID, sessionKey: body.sessionKey, vmUUID: body.vmUUID, vmName: body.vmName, datastore: body.volume,
            volumeUUID: body.volumeUUID, vcpuCount: body.vcpus, memoryBytes: memory, streamCount: body.streams, sourceHost: body.sourceHost)
        let offer = try await blocking { [agent] () throws(AgentError) in try agent.prepareIncoming(request) }
        return .ok(.init(body: .json(.init(address: offer.address, port: offer.port, taker: HTTPMigrationPeer.holder(offer.taker),
                                           destinationHost: offer.destinationHost))))
    }

    func commitIncomingMigration(_ input: Operations.CommitIncomingMigration.Input) async throws -> Operations.CommitIncomingMigration.Output {
        guard case .json(let body) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let migration = input.path.migration
        for (index, lock) in body.locks.enumerated() where !(1...255).contains(lock) {
            throw AgentError(.invalidArgument, "locks[\(index)] is \(lock); file locks are 1 – 255", field: "locks[\(index)]")
        }
        guard body.locks.first == body.primaryLock else {
            throw AgentError(.invalidArgument, "primaryLock must be the first of locks", field: "primaryLock")
        }
        for (name, holder) in [("giver", body.giver), ("taker", body.taker)] where holder.generation < 0 || !(0...65535).contains(holder.slot) {
            throw AgentError(.invalidArgument, "\(name) names slot \(holder.slot), generation \(holder.generation)", field: name)
        }
        let handover = LockHandover(primaryLock: body.primaryLock, locks: body.locks, giver: HTTPMigrationPeer.holder(body.giver),
                                    taker: HTTPMigrationPeer.holder(body.taker))
        let result = try await blocking { [agent] () throws(AgentError) in try agent.commitIncoming(migrationID: migration, handover: handover) }
        return .ok(.init(body: .json(.init(outcome: result.outcome == .committed ? .committed : .aborted,
                                           resumedWallNanoseconds: result.resumedWallNanoseconds))))
    }

    func abortIncomingMigration(_ input: Operations.AbortIncomingMigration.Input) async throws -> Operations.AbortIncomingMigration.Output {
        let migration = input.path.migration
        try await blocking { [agent] () throws(AgentError) in try agent.abortIncoming(migrationID: migration, reason: "aborted by the source") }
        return .noContent(.init())
    }

    /// The API's options with the defaults of ``MigrationOptions`` for what is left out; ranges checked.
    static func options(_ given: Components.Schemas.MigrationOptions?) throws(AgentError) -> MigrationOptions {
        var options = MigrationOptions()
        guard let given else { return options }
        func unsigned(_ value: Int64?, _ field: String) throws(AgentError) -> UInt64? {
            guard let value else { return nil }
            guard value >= 0 else { throw AgentError(.invalidArgument, "options.\(field) is negative", field: "options.\(field)") }
            return UInt64(value)
        }
        if let value = try unsigned(given.downtimeBudgetMilliseconds, "downtimeBudgetMilliseconds") { options.downtimeBudgetMilliseconds = value }
        if let value = given.streams { options.streams = value }
        if let value = try unsigned(given.maximumBandwidthBytesPerSecond, "maximumBandwidthBytesPerSecond") { options.maximumBandwidthBytesPerSecond = value }
        if let value = given.autoConverge { options.autoConverge = value }
        if let value = given.postCopy { options.postCopy = value }
        if let value = given.maximumRounds { options.maximumRounds = value }
        if let value = try unsigned(given.stallTimeoutMilliseconds, "stallTimeoutMilliseconds") { options.stallTimeoutMilliseconds = value }
        if let value = try unsigned(given.timeoutSeconds, "timeoutSeconds") { options.timeoutSeconds = value }
        do { try options.validate() } catch { throw AgentError(.invalidArgument, error.message, field: "options") }
        return options
    }

    static func convert(_ status: MigrationStatus) -> Components.Schemas.MigrationStatus {
        let p = status.progress
        let phase = Components.Schemas.MigrationProgress.PhasePayload(rawValue: p.phase.rawValue) ?? .failed
        let progress = Components.Schemas.MigrationProgress(
            phase: phase, round: p.round, transferredBytes: Int64(clamping: p.transferredBytes), remainingBytes: Int64(clamping: p.remainingBytes),
            dirtyRateBytesPerSecond: Int64(clamping: p.dirtyRateBytesPerSecond), bandwidthBytesPerSecond: Int64(clamping: p.bandwidthBytesPerSecond),
            expectedDowntimeMilliseconds: p.expectedDowntimeMilliseconds, throttlePercent: p.throttlePercent,
            dataPages: Int64(clamping: p.dataPages), zeroPages: Int64(clamping: p.zeroPages))
        return .init(migrationID: status.migrationID, state: .init(rawValue: status.state.rawValue) ?? .failed,
                     destinationHost: status.destinationHost, started: Date(wallNanoseconds: status.startedWallNanoseconds),
                     ended: status.endedWallNanoseconds.map { Date(wallNanoseconds: $0) }, progress: progress,
                     downtimeMilliseconds: status.downtimeMilliseconds, postCopy: status.postCopy, message: status.message)
    }
}
