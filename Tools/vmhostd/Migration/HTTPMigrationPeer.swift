import Foundation
import HostAgent
import HostAgentAPI
import HostAgentClient
import LiveMigration
import OpenAPIRuntime
import Synchronization
import VMFSCore

/// The destination agent of a migration, reached over its HTTPS API with a bearer token
/// (`docs/MIGRATION.md`). The agent calls it from a task thread: each call blocks until the
/// destination answers.
final class HTTPMigrationPeer: MigrationPeer {
    let connection: AgentConnection
    let streamHost: String
    /// A certificate file written for this migration only, removed with the peer.
    let temporaryCertificate: String?

    /// - Parameters:
    ///   - destination: `https://HOST[:PORT]`; HOST must be an IPv4 address (the streams go there).
    ///   - trustedCertificate: A PEM file to trust, or nil.
    init(destination: String, token: String, trustedCertificate: String?, insecure: Bool, ownsCertificate: Bool = false) throws(AgentError) {
        temporaryCertificate = ownsCertificate ? trustedCertificate : nil
        let endpoint: AgentEndpoint
        do { endpoint = try AgentEndpoint.parse(destination, token: token, trustedCertificate: trustedCertificate, insecure: insecure) } catch {
            throw AgentError(.invalidArgument, error.description, field: "destination")
        }
        guard case .https(let host, _, _, _, _) = endpoint else {
            throw AgentError(.invalidArgument, "the destination must be https://HOST[:PORT]", field: "destination")
        }
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else {
            throw AgentError(.invalidArgument, "the destination host must be an IPv4 address (the migration streams connect to it), not '\(host)'",
                             field: "destination")
        }
        do { connection = try AgentConnection(endpoint) } catch { throw AgentError(.invalidArgument, error.description, field: "destination") }
        streamHost = host
    }

    deinit {
        if let temporaryCertificate { unlink(temporaryCertificate) }
        let connection = connection
        Task { await connection.shutdown() }
    }

    func prepareIncoming(_ request: IncomingMigrationRequest) throws(AgentError) -> IncomingMigrationOffer {
        let body = Components.Schemas.IncomingMigrationRequest(
            migrationID: request.migrationID, sessionKey: request.sessionKey, vmUUID: request.vmUUID, vmName: request.vmName,
            volume: request.datastore, volumeUUID: request.volumeUUID, vcpus: request.vcpuCount, memoryBytes: Int64(clamping: request.memoryBytes),
            streams: request.streamCount, sourceHost: request.sourceHost)
        let offer = try call { [connection] in try await connection.client.prepareIncomingMigration(body: .json(body)).ok.body.json }
        return IncomingMigrationOffer(address: offer.address, port: offer.port, taker: Self.holder(offer.taker), destinationHost: offer.destinationHost)
    }

    func commitIncoming(migrationID: String, handover: LockHandover) throws(AgentError) -> IncomingCommitResult {
        let body = Components.Schemas.LockHandover(primaryLock: handover.primaryLock, locks: handover.locks, giver: Self.holder(handover.giver),
                                                   taker: Self.holder(handover.taker))
        let result = try call { [connection] in
            try await connection.client.commitIncomingMigration(path: .init(migration: migrationID), body: .json(body)).ok.body.json
        }
        return IncomingCommitResult(outcome: result.outcome == .committed ? .committed : .aborted, resumedWallNanoseconds: result.resumedWallNanoseconds)
    }

    func abortIncoming(migrationID: String, reason: String) throws(AgentError) {
        _ = try call { [connection] in
            _ = try await connection.client.abortIncomingMigration(path: .init(migration: migrationID)).noContent
            return true
        }
    }

    static func holder(_ identity: LockHolderIdentity) -> Components.Schemas.LockHolder {
        .init(host: identity.host, slot: identity.slot, generation: Int64(clamping: identity.generation))
    }

    static func holder(_ holder: Components.Schemas.LockHolder) -> LockHolderIdentity {
        LockHolderIdentity(host: holder.host, slot: holder.slot, generation: UInt64(clamping: holder.generation))
    }

    /// Runs `body` on the concurrency pool and waits for it (the caller is a task thread, never a pool thread).
    private func call<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws(AgentError) -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do { let value = try await body(); result.withLock { $0 = .success(value) } } catch { result.withLock { $0 = .failure(error) } }
            done.signal()
        }
        done.wait()
        switch result.withLock({ $0 }) {
        case .success(let value)?: return value
        case .failure(let error)?: throw Self.agentError(error)
        case nil: throw AgentError(.failed, "the destination call ended without a result")
        }
    }

    static func agentError(_ error: any Error) -> AgentError {
        let cause = (error as? ClientError)?.underlyingError ?? error
        guard let failure = cause as? AgentClientError else { return AgentError(.failed, "the destination agent: \(cause)") }
        let code: AgentError.Code = switch failure.status {
        case 400?: .invalidArgument
        case 404?: .notFound
        case 409?: .busy
        case 503?: .storageUnavailable
        default: .failed
        }
        return AgentError(code, "the destination agent: \(failure.description)")
    }
}
