public import VMFSCore
#if canImport(Glibc)
import Glibc
#endif

/// A real image file for the image fuzzers (on tmpfs when there is one), reset from a snapshot
/// before every input and checked after it: its size must never change, so a write past the
/// end of the volume is caught even if it got past ``guarded(_:writable:)``.
///
/// One file per process (`vmfs-fuzz-<pid>-<name>.img` in `$VMFS_FUZZ_SCRATCH`, else `/dev/shm`,
/// else `/tmp`), removed when the process exits normally.
public final class ImageFile: @unchecked Sendable {
    public let path: String
    public let snapshot: ImageSnapshot

    public init(name: String, snapshot: ImageSnapshot) {
        self.snapshot = snapshot
        path = "\(Self.scratchDirectory)/vmfs-fuzz-\(getpid())-\(name).img"
        Self.created.append(path)
        if Self.created.count == 1 { atexit { for path in ImageFile.created { unlink(path) } } }
    }

    nonisolated(unsafe) private static var created: [String] = []

    private static var scratchDirectory: String {
        if let configured = getenv("VMFS_FUZZ_SCRATCH") { return String(cString: configured) }
        return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    }

    /// Rewrites the file to hold exactly the snapshot and opens it (without `O_DIRECT`).
    public func reset() -> FileBlockDevice {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0, ftruncate(fd, off_t(snapshot.size)) == 0 else { fatalError("cannot create \(path): errno \(errno)") }
        for chunk in snapshot.chunks {
            let written = chunk.bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(chunk.offset)) }
            guard written == chunk.bytes.count else { fatalError("cannot write \(path): errno \(errno)") }
        }
        close(fd)
        do {
            return try FileBlockDevice(path: path, readOnly: false, directIO: false)
        } catch {
            fatalError("cannot open \(path): \(error)")
        }
    }

    /// Crashes (a fuzzer finding) when the file no longer has the snapshot's size.
    public func checkSize() {
        var info = stat()
        guard stat(path, &info) == 0 else { fatalError("fuzz oracle: \(path) disappeared") }
        guard UInt64(info.st_size) == snapshot.size else {
            fatalError("fuzz oracle: the image grew from \(snapshot.size) to \(info.st_size) bytes: a write outside the device")
        }
    }
}
