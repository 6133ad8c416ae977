internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// Checks made before anything is written to the volume, and what the kernel's mount table says.
enum MountTable {
    /// One line of `/proc/self/mountinfo`.
    struct Entry: Equatable {
        /// `major:minor` of the mounted filesystem (names its bdi in `/sys/class/bdi`).
        var device: String
        var mountpoint: String
        var type: String
        var source: String
    }

    /// Every mount this process can see.
    static func entries() -> [Entry] {
        guard let text = readFile("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line -> Entry? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return Entry(device: String(fields[2]), mountpoint: unescape(fields[4]), type: String(fields[dash + 1]),
                         source: unescape(fields[dash + 2]))
        }
    }

    /// The mount on exactly `path`, the last one when several are stacked.
    static func entry(at path: String) -> Entry? {
        entries().last { $0.mountpoint == path }
    }

    /// Checks that `path` is a directory nothing is mounted on.
    ///
    /// - Throws: `notFound`, `invalidArgument` (not a directory), `busy` (already a mount
    ///   point, or a FUSE mount whose daemon died).
    static func validateMountpoint(_ path: String) throws(VMFSError) {
        var info = stat()
        if stat(path, &info) != 0 {
            let code = errno
            if code == ENOTCONN {
                throw VMFSError(.busy, "mount point \(path) is a FUSE mount whose daemon has gone; run 'fusermount3 -u \(path)' first")
            }
            if code == ENOENT { throw VMFSError(.notFound, "mount point \(path) does not exist") }
            throw VMFSError(.invalidArgument, "cannot use mount point \(path): \(String(cString: strerror(code)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw VMFSError(.invalidArgument, "mount point \(path) is not a directory")
        }
        if let mounted = entry(at: canonical(path)) {
            throw VMFSError(.busy, "mount point \(path) is busy: \(mounted.source) (\(mounted.type)) is already mounted there")
        }
    }

    /// Checks that `path` is an image file or a block device (an iSCSI URL is checked by logging in).
    static func validateDevice(_ path: String) throws(VMFSError) {
        guard !ISCSIAddress.isISCSI(path) else { return }
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT { throw VMFSError(.notFound, "device \(path) does not exist") }
            throw VMFSError(.invalidArgument, "cannot use device \(path): \(String(cString: strerror(code)))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else {
            throw VMFSError(.invalidArgument, "device \(path) is neither an image file nor a block device")
        }
    }

    /// `path` with symbolic links resolved (as the mount table lists it).
    static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Reads a whole (small) file.
    static func readFile(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Undoes the octal escapes of mountinfo (`\040` for a space and so on).
    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var index = 0
        while index < raw.count {
            if raw[index] == UInt8(ascii: "\\"), index + 3 < raw.count,
               let value = UInt8(String(decoding: raw[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(raw[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
