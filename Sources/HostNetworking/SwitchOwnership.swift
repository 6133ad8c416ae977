internal import SystemSupport
#if canImport(Glibc)
internal import Glibc
#endif

/// Which process of this network namespace runs a virtual switch's uplink: the one holding an
/// exclusive `flock` on `DIRECTORY/NETNS-SWITCH.lock` (the host agent, or without one the first
/// `vmctl run` using the switch). Another process that needs the switch waits for the lock and takes
/// over when the holder exits. The namespace's identity (the inode of `/proc/thread-self/ns/net`) is in
/// the name because bridges are per namespace while `/run` is shared.
enum SwitchOwnership {
    /// The lock file of switch `name` in this namespace.
    static func lockPath(directory: String, switch name: String) -> String {
        var status = stat()
        let namespace = stat("/proc/thread-self/ns/net", &status) == 0 ? String(status.st_ino) : "0"
        return "\(directory)/\(namespace)-\(InterfaceNames.hex(name, digits: 12)).lock"
    }

    /// The lock of switch `name`, or nil when another process holds it.
    ///
    /// - Throws: ``NetworkError`` when the lock file cannot be created.
    static func tryAcquire(directory: String, switch name: String) throws(NetworkError) -> OwnedDescriptor? {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw NetworkError(.failed, "cannot create \(directory) for the virtual switch locks: errno \(errno)")
        }
        let path = lockPath(directory: directory, switch: name)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw NetworkError(.failed, "cannot open \(path): errno \(errno)") }
        let owned = OwnedDescriptor(fd)
        return flock(fd, LOCK_EX | LOCK_NB) == 0 ? owned : nil
    }
}
