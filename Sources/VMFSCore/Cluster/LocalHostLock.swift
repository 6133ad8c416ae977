import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A lock file that proves, on this machine, that a host identity is mounted by a living process.
///
/// The kernel drops an `flock` when its process dies, so a previous incarnation that crashed
/// leaves the lock free and its heartbeat slot can be reclaimed without waiting for it to look
/// dead to everyone.
final class LocalHostLock: Sendable {
    private let descriptor: Int32
    private let released = Mutex<Bool>(false)
    let path: String

    /// Takes the lock for (volume, host), or throws ``VMFSError/Code/busy`` when a living process holds it.
    init(volume: HostUUID, host: HostUUID) throws(VMFSError) {
        let directory = "/run/vmfs"
        mkdir(directory, 0o755)
        path = "\(directory)/\(volume)-\(host).lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw VMFSError.system("open", errno: errno, path: path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw VMFSError(.busy, "host \(host) already has volume \(volume) mounted in another process on this machine")
            }
            throw VMFSError.system("flock", errno: code, path: path)
        }
        descriptor = fd
    }

    /// Drops the lock (at unmount); later calls do nothing.
    func release() {
        let first = released.withLock { r -> Bool in
            defer { r = true }
            return !r
        }
        guard first else { return }
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    deinit { release() }
}
