import Glibc
internal import CVMFSLinux
import SystemSupport
import VMFSCore
import VMFSToolSupport

/// A local file `vmfs put` imports: a regular file (including `/proc`-style files whose size
/// says 0) or a block device. It is opened without blocking and checked before anything is
/// created on the volume; everything else (directories, FIFOs, sockets, character devices such
/// as `/dev/zero` that may never end) is refused.
/// Used by one thread at a time (a put reads it on a thread of its own).
final class LocalSource: @unchecked Sendable {
    enum Kind { case regularFile, blockDevice }

    let path: String
    let kind: Kind
    /// Mode, owner and group for the copy on the volume.
    let attributes: CreateAttributes
    /// The size `stat` reports for a regular file (a hint: pseudo files say 0 or 4096), the
    /// device size (`BLKGETSIZE64`) for a block device.
    let statedSize: UInt64
    private let descriptor: Int32

    init(path: String) throws(ToolError) {
        // O_NONBLOCK: opening a FIFO that has no writer returns at once instead of waiting forever.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .systemCall("cannot open \(path)") }
        let info: LocalFileStatus
        do {
            info = try LocalFileStatus.of(descriptor: fd, subject: path)
        } catch {
            close(fd)
            throw .systemCall("cannot stat \(path)", errno: error.errno)
        }
        var size = info.size
        switch info.kind {
        case .regularFile:
            kind = .regularFile
        case .blockDevice:
            kind = .blockDevice
            let result = cvmfs_block_device_size(fd, &size)
            guard result == 0 else {
                close(fd)
                throw .systemCall("cannot read the size of block device \(path)", errno: -result)
            }
        default:
            close(fd)
            throw ToolError("\(path) is \(Self.describe(info.kind)); vmfs put copies regular files and block devices")
        }
        // Reads block from here on (a device or file that stalls is waited for, like cp does).
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.path = path
        descriptor = fd
        statedSize = size
        attributes = CreateAttributes(mode: info.permissions, uid: info.userID, gid: info.groupID)
    }

    deinit { close(descriptor) }

    private static func describe(_ kind: LocalFileStatus.Kind) -> String {
        switch kind {
        case .directory: "a directory"
        case .fifo: "a FIFO (its data has no end to wait for)"
        case .socket: "a socket"
        case .characterDevice: "a character device (a stream without a size, which may never end)"
        default: "not a regular file"
        }
    }

    /// Reads the whole source to its end and calls `store` with every chunk that holds a
    /// non-zero byte, with its offset; all-zero chunks are left out so the copy stays sparse.
    /// Holes of a sparse regular file are skipped without reading them (`SEEK_DATA`).
    ///
    /// - Returns: The size of the source: where reading ended, or the end of a trailing hole.
    /// - Throws: ``ToolError`` when reading fails, or a block device ends before its size.
    func copyData(chunk: Int = 1 << 20, into store: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> UInt64 {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        // Pseudo files (size 0) do not support SEEK_DATA, or answer it wrongly: read those to the end.
        var skipsHoles = kind == .regularFile && statedSize > 0
        var position: UInt64 = 0
        while true {
            if skipsHoles {
                let data = lseek(descriptor, off_t(position), CVMFS_SEEK_DATA)
                if data < 0 {
                    guard errno == ENXIO else { skipsHoles = false; continue }
                    // Only a hole follows: the file ends where stat says now.
                    let info: LocalFileStatus
                    do { info = try LocalFileStatus.of(descriptor: descriptor, subject: path) } catch {
                        throw ToolError.systemCall("cannot stat \(path)", errno: error.errno)
                    }
                    return max(position, info.size)
                }
                if UInt64(data) != position {
                    position = UInt64(data)
                    guard lseek(descriptor, data, SEEK_SET) == data else { throw ToolError.systemCall("cannot seek in \(path)") }
                }
            }
            let count = read(descriptor, buffer.baseAddress, chunk)
            if count < 0 {
                if errno == EINTR { continue }
                throw ToolError.systemCall("reading \(path) failed at byte \(position)")
            }
            if count == 0 { break }
            let piece = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            if !piece.isAllZeros { try store(position, piece) }
            position += UInt64(count)
        }
        if kind == .blockDevice, position != statedSize {
            throw ToolError("block device \(path) ended after \(position) of its \(statedSize) bytes")
        }
        return position
    }
}
