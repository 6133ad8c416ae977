public import VMFSCore
public import LiveMigration

/// What the source agent asks of the destination agent (`docs/MIGRATION.md`, "Connect").
public struct IncomingMigrationRequest: Codable, Sendable, Equatable {
    /// 32 hex digits: the migration's ID, as the stream handshake checks it.
    public var migrationID: String
    /// 64 hex digits: the one-time session key both agents prove on every stream.
    public var sessionKey: String
    public var vmUUID: String
    public var vmName: String
    /// The datastore name (the same volume must be configured on both hosts).
    public var datastore: String
    /// The volume's UUID, so that a same-named datastore of another volume is refused.
    public var volumeUUID: String
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    public var streamCount: Int
    /// The source host's name (events, logs).
    public var sourceHost: String

    public init(migrationID: String, sessionKey: String, vmUUID: String, vmName: String, datastore: String, volumeUUID: String,
                vcpuCount: Int, memoryBytes: UInt64, streamCount: Int, sourceHost: String) {
        self.migrationID = migrationID
        self.sessionKey = sessionKey
        self.vmUUID = vmUUID
        self.vmName = vmName
        self.datastore = datastore
        self.volumeUUID = volumeUUID
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.streamCount = streamCount
        self.sourceHost = sourceHost
    }
}

/// The destination's answer: where to connect, and the lock holder the files go to.
public struct IncomingMigrationOffer: Codable, Sendable, Equatable {
    /// IPv4 address and TCP port the destination listens on for this migration's streams.
    public var address: String
    public var port: Int
    /// How the destination host appears as a lock holder on the volume.
    public var taker: LockHolderIdentity
    public var destinationHost: String

    public init(address: String, port: Int, taker: LockHolderIdentity, destinationHost: String) {
        self.address = address
        self.port = port
        self.taker = taker
        self.destinationHost = destinationHost
    }
}

/// How a source agent talks to the destination agent: over the destination's HTTPS API in
/// `vmhostd`, or directly in tests with two agents in one process.
public protocol MigrationPeer: Sendable {
    /// The destination checks the volume, memory and vCPUs, builds the incoming VMM and listens.
    func prepareIncoming(_ request: IncomingMigrationRequest) throws(AgentError) -> IncomingMigrationOffer
    /// The handoff: the destination commits the lock handover (the one atomic step) and, when it
    /// won, opens the files and starts the restored guest.
    func commitIncoming(migrationID: String, handover: LockHandover) throws(AgentError) -> IncomingCommitResult
    /// The source gives up before the handoff: the destination drops its VMM.
    func abortIncoming(migrationID: String, reason: String) throws(AgentError)
    /// The address to connect the streams to when the offer names none (the one the peer's API was reached at).
    var streamHost: String { get }
}

/// The destination's answer to the handoff.
public struct IncomingCommitResult: Codable, Sendable, Equatable {
    public var outcome: LockHandoverOutcome
    /// `CLOCK_REALTIME` when the restored guest started running at the destination (committed only).
    public var resumedWallNanoseconds: Int64?

    public init(outcome: LockHandoverOutcome, resumedWallNanoseconds: Int64? = nil) {
        self.outcome = outcome
        self.resumedWallNanoseconds = resumedWallNanoseconds
    }
}

/// Where a migration of a VM stands, as its source agent reports it (the API's migration status).
public struct MigrationStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case connecting, copying, switchingOver, completed, failed, cancelled
    }

    public var migrationID: String
    public var state: State
    public var destinationHost: String
    public var startedWallNanoseconds: Int64
    public var endedWallNanoseconds: Int64?
    public var progress: MigrationProgress
    /// Guest paused at the source → running at the destination, as the agents measured it.
    public var downtimeMilliseconds: Double?
    public var postCopy: Bool
    public var message: String?

    public init(migrationID: String, state: State, destinationHost: String, startedWallNanoseconds: Int64,
                progress: MigrationProgress = MigrationProgress()) {
        self.migrationID = migrationID
        self.state = state
        self.destinationHost = destinationHost
        self.startedWallNanoseconds = startedWallNanoseconds
        self.progress = progress
        postCopy = false
    }
}
