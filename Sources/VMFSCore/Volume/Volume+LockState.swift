/// Who holds a file's lock, as this host sees it now (one sector read).
public struct FileLockState: Sendable, Equatable {
    /// How a holder looks from this host.
    public enum Liveness: String, Sendable, Equatable {
        /// This host (this membership).
        case me
        /// A host whose heartbeat this host sees change.
        case alive
        /// A host silent for its dead interval: recovery frees its locks.
        case dead
        /// A holder whose heartbeat generation moved on: the lock is free in effect.
        case stale
        /// A host being recovered now.
        case replaying
    }

    public struct Holder: Sendable, Equatable {
        public var host: HostUUID
        public var hostName: String
        public var slot: Int
        public var liveness: Liveness
    }

    /// `exclusive`, `read-only`, `multi-writer`, or `free`.
    public var mode: String
    public var holders: [Holder]

    /// True when a living host other than this one holds the lock.
    public var isHeldElsewhere: Bool { holders.contains { $0.liveness == .alive || $0.liveness == .replaying } }
    /// True when this host holds it.
    public var isHeldHere: Bool { holders.contains { $0.liveness == .me } }
}

extension Volume {
    /// Who holds the lock of file `name` now, as this host sees it.
    public func lockState(ofFile name: String) throws(VMFSError) -> FileLockState {
        let session = try current()
        guard let entry = try session.namespace.lookup(name) else { throw VMFSError(.notFound, "no file named '\(name)'") }
        let index = FormatConstants.descriptorLockIndex(slot: entry.slot)
        let (record, _) = try session.locks.read(index, kind: .fileDescriptor)
        let me = LockManager.Me(identity: session.identity, slot: session.membership.slot, generation: session.membership.generation)
        let holders = record.holders.map { holder -> FileLockState.Holder in
            let liveness: FileLockState.Liveness = switch session.locks.status(of: holder, me: me) {
            case .me: .me
            case .alive: .alive
            case .dead: .dead
            case .stale: .stale
            case .replaying: .replaying
            }
            let name = session.observations.observation(holder.slot)?.slot.ownerName ?? ""
            return FileLockState.Holder(host: holder.host, hostName: name, slot: holder.slot, liveness: liveness)
        }
        return FileLockState(mode: record.holders.isEmpty ? "free" : "\(record.mode)", holders: holders)
    }
}
