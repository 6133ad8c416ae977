public import LiveMigration
internal import VMXProtocol
internal import SystemSupport

/// One migration of a VM as its agent follows it: the status the API reports, and what the VMM
/// said (progress, ready, ended, the restored guest's start).
final class VMMigration: Sendable {
    enum Role: Sendable { case source, destination }

    struct State: Sendable {
        var status: MigrationStatus
        var ready: MigrationReadyReport?
        var ended: MigrationEndReport?
        /// Destination: when the restored guest started (the VMM's `running`, "migrated in").
        var resumedWall: Int64?
        var cancelled = false
        /// Destination: the VMM, its connection and the stream listener until the handoff.
        var incoming: IncomingSession?
    }

    let role: Role
    let id: String
    let state: Monitor<State>

    init(role: Role, id: String, destinationHost: String) {
        self.role = role
        self.id = id
        state = Monitor(State(status: MigrationStatus(migrationID: id, state: .connecting, destinationHost: destinationHost,
                                                      startedWallNanoseconds: MonotonicClock.wallNanoseconds)))
    }

    var status: MigrationStatus { state.withLock { $0.status } }

    /// A message of the VMM about this migration.
    func observe(_ message: ControlMessage) {
        state.withLock { s in
            switch message {
            case .migrationProgress(let progress):
                s.status.progress = progress
                if s.status.state == .connecting { s.status.state = .copying }
            case .migrationReady(let ready):
                s.ready = ready
                s.status.progress = ready.progress
                s.status.postCopy = ready.postCopy
                s.status.state = .switchingOver
            case .migrationEnded(let ended):
                s.ended = ended
                if let progress = ended.progress, role == .source { s.status.progress = progress }
            case .error(let reply) where [ControlMessage.migrateOut(MigrateOutRequest(options: MigrationOptions(), streams: [])).type,
                                          ControlMessage.migrateIn(MigrateInRequest(streams: [])).type].contains(reply.inReplyTo):
                s.ended = MigrationEndReport(result: "failed", code: reply.code, message: "the VMM refused: \(reply.message)")
            case .stateChanged(let change) where change.state == .running && change.reason == "migrated in":
                s.resumedWall = change.wallNanoseconds ?? MonotonicClock.wallNanoseconds
            default:
                break
            }
        }
    }

    /// Waits up to `timeoutNanoseconds` for `pick` to return a value.
    func wait<T: Sendable>(timeoutNanoseconds: UInt64, _ pick: @escaping @Sendable (State) -> T?) -> T? {
        state.wait(until: MonotonicClock.nanoseconds + timeoutNanoseconds, for: { pick($0) != nil }) { pick($0) } ?? nil
    }

    /// Records the end.
    func finish(_ result: MigrationStatus.State, message: String? = nil, downtimeMilliseconds: Double? = nil) {
        state.withLock { s in
            s.status.state = result
            s.status.message = message
            s.status.endedWallNanoseconds = MonotonicClock.wallNanoseconds
            if let downtimeMilliseconds { s.status.downtimeMilliseconds = downtimeMilliseconds }
        }
    }
}

/// The destination's VMM while it receives, before the handoff.
final class IncomingSession: Sendable {
    let request: IncomingMigrationRequest
    let process: VMMProcess
    let connection: VMMConnection
    let socketPath: String
    let listener: OwnedDescriptor

    init(request: IncomingMigrationRequest, process: VMMProcess, connection: VMMConnection, socketPath: String, listener: OwnedDescriptor) {
        self.request = request
        self.process = process
        self.connection = connection
        self.socketPath = socketPath
        self.listener = listener
    }
}
