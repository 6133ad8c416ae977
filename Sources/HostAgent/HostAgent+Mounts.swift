internal import SystemSupport

/// FUSE mounts of the agent's volumes, served in the agent's process by its one membership.
extension HostAgent {
    /// The mount points of volume `name` this agent serves.
    public func mountPoints(of name: String) -> [String] {
        mounts.withLock { $0.filter { $0.value.volume == name }.map(\.key).sorted() }
    }

    /// Mounts volume `name` at `mountPoint` through FUSE.
    public func mount(_ name: String, at mountPoint: String, options: [String]) throws(AgentError) {
        let datastore = try datastore(named: name)
        _ = try datastore.volume()
        guard let provider = mountProvider.withLock({ $0 }) else {
            throw AgentError(.failed, "this agent was built without FUSE support")
        }
        try mounts.withLock { (all) throws(AgentError) in
            if all[mountPoint] != nil { throw AgentError(.alreadyExists, "\(mountPoint) is already a mount of this agent", field: "mountPoint") }
        }
        let mount = try provider(datastore, mountPoint, options)
        mounts.withLock { $0[mountPoint] = mount }
        context.events.record(HostEvent(kind: .mountStarted, volume: name, message: "volume '\(name)' mounted at \(mountPoint)"))
    }

    /// Unmounts `mountPoint`.
    public func unmount(_ name: String, at mountPoint: String) throws(AgentError) {
        guard let mount = mounts.withLock({ $0[mountPoint] }), mount.volume == name else {
            throw AgentError(.notFound, "volume '\(name)' is not mounted at \(mountPoint) by this agent", field: "mountPoint")
        }
        mount.stop()
        mounts.withLock { $0[mountPoint] = nil }
        context.events.record(HostEvent(kind: .mountStopped, volume: name, message: "volume '\(name)' unmounted from \(mountPoint)"))
    }

    /// Installs what starts a FUSE mount (the daemon links the FUSE layer; the library does not).
    public func setMountProvider(_ provider: @escaping @Sendable (Datastore, String, [String]) throws(AgentError) -> AgentMount) {
        mountProvider.withLock { $0 = provider }
    }
}

/// A running FUSE mount.
public struct AgentMount: Sendable {
    public let volume: String
    public let stop: @Sendable () -> Void

    public init(volume: String, stop: @escaping @Sendable () -> Void) {
        self.volume = volume
        self.stop = stop
    }
}
