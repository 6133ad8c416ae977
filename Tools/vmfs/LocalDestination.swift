import Glibc
import SystemSupport
import VMFSToolSupport

/// The local file `vmfs get` writes: a new file created next to the destination with
/// `O_EXCL | O_NOFOLLOW`, filled, synced and then renamed over the destination. A symlink at
/// the destination is replaced, never followed; an existing file keeps its old contents until
/// the copy is complete; directories and special files (FIFOs, devices, sockets) are refused.
final class LocalDestination {
    let path: String
    private let directory: String
    private let temporaryPath: String
    private let descriptor: Int32
    private var committed = false

    init(path: String) throws(ToolError) {
        let existing: LocalFileStatus?
        do { existing = try LocalFileStatus.ofLink(atPath: path) } catch { throw .systemCall("cannot check \(path)", errno: error.errno) }
        if let existing, existing.kind != .regularFile, existing.kind != .symbolicLink {
            throw ToolError("\(path) exists and is \(existing.kind == .directory ? "a directory" : "a special file (FIFO, device or socket)"); "
                            + "vmfs get writes regular files only")
        }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { path[..<$0].isEmpty ? "/" : String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty, base != ".", base != ".." else { throw ToolError("\(path) does not name a file") }
        var template = Array("\(directory)/.\(base.prefix(200)).vmfs-get-XXXXXX".utf8CString)
        // mkstemp creates with O_CREAT | O_EXCL (never through a symlink), mode 0600.
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .systemCall("cannot create a file in \(directory)") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        descriptor = fd
        temporaryPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.path = path
        self.directory = directory
    }

    deinit {
        close(descriptor)
        if !committed { unlink(temporaryPath) }
    }

    /// Sets the file's size (before writing, so that a size the local filesystem cannot hold fails at once).
    func setSize(_ size: UInt64) throws(ToolError) {
        guard size <= UInt64(Int64.max) else {
            throw ToolError("\(path) cannot be \(size) bytes: local files end at \(Int64.max) bytes")
        }
        while ftruncate(descriptor, off_t(size)) != 0 {
            if errno != EINTR { throw .systemCall("cannot make \(path) \(size) bytes long") }
        }
    }

    /// Writes `bytes` at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(ToolError) {
        var done = 0
        while done < bytes.count {
            let count = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .systemCall("writing \(path) failed at byte \(offset + UInt64(done))", errno: count < 0 ? errno : EIO) }
            done += count
        }
    }

    /// Gives the file `mode` (less the umask), makes it durable and renames it over the destination.
    func commit(mode: UInt32) throws(ToolError) {
        let mask = umask(0)
        umask(mask)
        guard fchmod(descriptor, mode_t(mode) & 0o777 & ~mask) == 0 else { throw .systemCall("cannot set the mode of \(path)") }
        guard fsync(descriptor) == 0 else { throw .systemCall("cannot sync \(path)") }
        guard rename(temporaryPath, path) == 0 else { throw .systemCall("cannot rename the copy to \(path)") }
        committed = true
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}
