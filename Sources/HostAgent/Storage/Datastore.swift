public import VMFSCore
public import SystemSupport

/// One volume this host's agent is the member of: the ``Volume`` when attached, or why it is not.
///
/// If the volume cannot be reached at start (device missing, refused), the agent keeps retrying
/// and says why in its status; VMs on it cannot be powered on meanwhile.
public final class Datastore: Sendable {
    /// How the datastore is configured.
    public struct Configuration: Sendable, Equatable {
        /// The name used in the API and in `/vmfs/volumes/NAME`.
        public var name: String
        /// The image file or block device.
        public var device: String
        /// Where to mount it through FUSE, if anywhere.
        public var mountPoint: String?

        public init(name: String, device: String, mountPoint: String? = nil) {
            self.name = name
            self.device = device
            self.mountPoint = mountPoint
        }
    }

    /// Whether the volume is usable.
    public enum Status: Sendable, Equatable {
        case attaching
        case attached
        /// The host cannot reach or join the volume; the message says why.
        case unreachable(String)
        case detached
    }

    private struct State {
        var volume: Volume?
        var status: Status = .attaching
    }

    public let configuration: Configuration
    private let options: MountOptions
    private let state = Monitor(State())

    public var name: String { configuration.name }

    public init(configuration: Configuration, options: MountOptions) {
        self.configuration = configuration
        self.options = options
    }

    /// What the agent leaves in the volume's local host lock: how commands of this host reach it.
    public struct HolderNote: Codable, Sendable, Equatable {
        public var agentSocket: String
        public var datastore: String
        public var pid: Int32

        public init(agentSocket: String, datastore: String, pid: Int32) {
            self.agentSocket = agentSocket
            self.datastore = datastore
            self.pid = pid
        }
    }

    /// Joins the volume. On failure the status says why and the error is returned.
    @discardableResult
    public func attach() -> AgentError? {
        if state.withLock({ $0.volume != nil }) { return nil }
        do {
            let volume = try Volume.mount(path: configuration.device, options: options)
            state.withLock { s in
                s.volume = volume
                s.status = .attached
            }
            return nil
        } catch {
            let message = "volume '\(name)' on \(configuration.device) cannot be attached: \(error)"
            state.withLock { $0.status = .unreachable(message) }
            return AgentError(.storageUnavailable, message)
        }
    }

    /// Leaves the volume (commits, releases every lock and the heartbeat slot).
    public func detach() {
        let volume = state.withLock { s -> Volume? in
            defer { s.volume = nil; s.status = .detached }
            return s.volume
        }
        try? volume?.unmount()
    }

    public var status: Status { state.withLock { $0.status } }

    /// The mounted volume, or a ``AgentError/Code/storageUnavailable`` error saying why not.
    public func volume() throws(AgentError) -> Volume {
        let (volume, status) = state.withLock { ($0.volume, $0.status) }
        if let volume { return volume }
        if case .unreachable(let message) = status { throw AgentError(.storageUnavailable, message) }
        throw AgentError(.storageUnavailable, "volume '\(name)' is not attached")
    }

    /// The volume's UUID once attached.
    public var uuid: String? { state.withLock { $0.volume.map { "\($0.header.uuid)" } } }
}
