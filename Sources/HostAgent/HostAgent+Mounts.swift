internal import SystemSupport
internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// FUSE mounts of the agent's volumes, served in the agent's process by its one membership.
extension HostAgent {
    /// The mount points of volume `name` this agent serves.
    public func mountPoints(of name: String) -> [String] {
        mounts.withLock { all in
            for (point, mount) in all where !mount.isActive() { all[point] = nil }
            return all.filter { $0.value.volume == name }.map(\.key).sorted()
        }
    }

    /// Mounts volume `name` at `mountPoint` through FUSE.
    public func mount(_ name: String, at mountPoint: String, options: [String]) throws(AgentError) {
        let datastore = try datastore(named: name)
        try Self.checkMountPoint(mountPoint)
        for option in options where option.utf8.count > 256 || option.contains(",") || option.isEmpty {
            throw AgentError(.invalidArgument, "mount option '\(option.prefix(64))' must be 1–256 characters without ','", field: "options")
        }
        _ = try datastore.volume()
        guard let provider = mountProvider.withLock({ $0 }) else {
            throw AgentError(.failed, "this agent was built without FUSE support")
        }
        try mounts.withLock { (all) throws(AgentError) in
            if let existing = all[mountPoint], existing.isActive() { throw AgentError(.alreadyExists, "\(mountPoint) is already a mount of this agent", field: "mountPoint") }
        }
        let mount = try provider(datastore, mountPoint, options)
        mounts.withLock { $0[mountPoint] = mount }
        context.events.record(HostEvent(kind: .mountStarted, volume: name, message: "volume '\(name)' mounted at \(mountPoint)"))
    }

    /// A mount point must be an absolute path naming an existing, empty directory outside the
    /// kernel's own trees.
    static func checkMountPoint(_ path: String) throws(AgentError) {
        guard path.hasPrefix("/"), path.utf8.count <= 4096, !path.split(separator: "/").contains(".."),
              !path.contains("\0") else {
            throw AgentError(.invalidArgument, "mount point '\(path.prefix(80))' must be an absolute path without '..'", field: "mountPoint")
        }
        for system in ["/proc", "/sys", "/dev", "/run/vmhostd"] where path == system || path.hasPrefix(system + "/") {
            throw AgentError(.invalidArgument, "mount point \(path) is inside \(system)", field: "mountPoint")
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw AgentError(.invalidArgument, "mount point \(path) is not an existing directory", field: "mountPoint")
        }
        guard ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? ["?"]).isEmpty else {
            throw AgentError(.invalidArgument, "mount point \(path) is not empty", field: "mountPoint")
        }
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
    /// False once the mount ended (unmounted from outside with umount).
    public let isActive: @Sendable () -> Bool

    public init(volume: String, stop: @escaping @Sendable () -> Void, isActive: @escaping @Sendable () -> Bool) {
        self.volume = volume
        self.stop = stop
        self.isActive = isActive
    }
}
