#if canImport(Glibc)
internal import Glibc
#endif

/// What `fstat`/`lstat` report about a file, as plain Swift values.
///
/// Tools read file status through this type instead of `struct stat` directly: on Linux the C
/// struct is owned by whichever Clang module first included `<sys/stat.h>` (Glibc or
/// CoreFoundation), which with member import visibility makes its fields unusable in a file that
/// imports only the other one. Here it is always Glibc's.
public struct LocalFileStatus: Sendable, Equatable {
    /// The kind of file, from the `S_IFMT` bits of the mode.
    public enum Kind: Sendable, Equatable {
        case regularFile, directory, symbolicLink, blockDevice, characterDevice, fifo, socket, unknown
    }

    public var kind: Kind
    /// The permission bits (`mode & 0o7777`).
    public var permissions: UInt32
    /// The size in bytes (0 when `stat` reports a negative size).
    public var size: UInt64
    public var userID: UInt32
    public var groupID: UInt32

    /// The status of an open descriptor (`fstat`).
    public static func of(descriptor: Int32, subject: String? = nil) throws(SystemError) -> LocalFileStatus {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw SystemError("fstat", errno: errno, subject: subject) }
        return LocalFileStatus(info)
    }

    /// The status of `path` itself, a symbolic link not followed (`lstat`); `nil` when nothing
    /// is there (`ENOENT`).
    public static func ofLink(atPath path: String) throws(SystemError) -> LocalFileStatus? {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw SystemError("lstat", errno: errno, subject: path)
        }
        return LocalFileStatus(info)
    }

    private init(_ info: stat) {
        kind = switch info.st_mode & S_IFMT {
        case S_IFREG: .regularFile
        case S_IFDIR: .directory
        case S_IFLNK: .symbolicLink
        case S_IFBLK: .blockDevice
        case S_IFCHR: .characterDevice
        case S_IFIFO: .fifo
        case S_IFSOCK: .socket
        default: .unknown
        }
        permissions = UInt32(info.st_mode) & 0o7777
        size = UInt64(max(info.st_size, 0))
        userID = info.st_uid
        groupID = info.st_gid
    }
}
