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

    static let directory = "/run/vmfs"

    static func path(volume: HostUUID, host: HostUUID) -> String { "\(directory)/\(volume)-\(host).lock" }

    /// Takes the lock for (volume, host), or throws ``VMFSError/Code/busy`` when a living process
    /// holds it. `note` is written into the file for other local programs (a host agent puts its
    /// API socket there, so commands on this host find it).
    init(volume: HostUUID, host: HostUUID, note: String? = nil) throws(VMFSError) {
        let directory = Self.directory
        mkdir(directory, 0o755)
        path = Self.path(volume: volume, host: host)
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
        ftruncate(fd, 0)
        if let note {
            let bytes = Array(note.utf8)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
    }

    /// The note of the living process that holds (volume, host) on this machine, or nil when
    /// none holds it. Reading never takes the lock.
    static func holderNote(volume: HostUUID, host: HostUUID) -> String? {
        let fd = open(path(volume: volume, host: host), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A shared lock succeeds only when nobody holds the exclusive one.
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
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
