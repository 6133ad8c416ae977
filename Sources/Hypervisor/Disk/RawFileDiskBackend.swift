internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A disk backed by a plain (possibly sparse) file or a block device such as a loop device:
/// `pread`/`pwrite`, `fdatasync` for flush, `fallocate(PUNCH_HOLE)` or `BLKDISCARD` for discard,
/// and for write-zeroes `fallocate(PUNCH_HOLE)` / `fallocate(ZERO_RANGE)` on a file and
/// `BLKZEROOUT` on a block device (falling back to writing zeros where those are unsupported).
public final class RawFileDiskBackend: DiskBackend {
    public let path: String
    public let byteCount: UInt64
    public let identifier: String
    public let isReadOnly: Bool
    private let descriptor: OwnedFileDescriptor
    private let isBlockDevice: Bool

    /// Opens an existing file or block device.
    ///
    /// - Parameters:
    ///   - path: The image file or device.
    ///   - readOnly: Opens read-only and refuses guest writes.
    ///   - identifier: The GET_ID serial; defaults to the file name.
    /// - Throws: ``DiskError`` if the file cannot be opened, is empty, or its size is not a
    ///   multiple of 512 bytes.
    public init(path: String, readOnly: Bool = false, identifier: String? = nil) throws(DiskError) {
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw DiskError(.io, "cannot open disk image \(path)", errno: errno) }
        let owned = OwnedFileDescriptor(fd)
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DiskError(.io, "cannot stat disk image \(path)", errno: errno) }
        var size = UInt64(info.st_size)
        let blockDevice = (info.st_mode & S_IFMT) == S_IFBLK
        if blockDevice {
            var deviceSize: UInt64 = 0
            let result = cvmfs_block_device_size(fd, &deviceSize)
            guard result == 0 else { throw DiskError(.io, "cannot size block device \(path)", errno: -result) }
            size = deviceSize
        }
        guard size > 0 else { throw DiskError(.outOfRange, "disk image \(path) is empty (0 bytes)") }
        guard size % 512 == 0 else {
            throw DiskError(.outOfRange, "disk image \(path) is \(size) bytes, not a multiple of 512")
        }
        self.path = path
        self.byteCount = size
        self.isReadOnly = readOnly
        self.descriptor = owned
        self.isBlockDevice = blockDevice
        self.identifier = identifier ?? String(path.split(separator: "/").last ?? "disk")
    }

    /// Creates (or truncates) a sparse file of `byteCount` bytes and opens it.
    public static func createSparseFile(at path: String, byteCount: UInt64) throws(DiskError) -> RawFileDiskBackend {
        guard byteCount > 0, byteCount % 512 == 0 else {
            throw DiskError(.outOfRange, "disk size \(byteCount) for \(path) must be a positive multiple of 512")
        }
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DiskError(.io, "cannot create disk image \(path)", errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(byteCount)) == 0 else {
            throw DiskError(.io, "cannot size disk image \(path) to \(byteCount) bytes", errno: errno)
        }
        return try RawFileDiskBackend(path: path)
    }

    private func checkRange(_ offset: UInt64, _ count: UInt64, _ operation: String, writing: Bool = false) throws(DiskError) {
        if writing, isReadOnly { throw DiskError(.readOnly, "\(path) is read-only") }
        guard offset <= byteCount, count <= byteCount - offset else {
            throw DiskError(.outOfRange, "\(operation) of \(count) bytes at \(offset) is past the end of \(path) (\(byteCount) bytes)")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        try checkRange(offset, UInt64(buffer.count), "read")
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor.rawValue, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 {  // end of file on a shrinking file: the rest reads as zeros
                (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            if errno == EINTR { continue }
            throw DiskError(.io, "read of \(buffer.count) bytes at \(offset) from \(path)", errno: errno)
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        try checkRange(offset, UInt64(buffer.count), "write", writing: true)
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pwrite(descriptor.rawValue, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n < 0, errno == EINTR { continue }
            throw DiskError(.io, "write of \(buffer.count) bytes at \(offset) to \(path)", errno: n < 0 ? errno : EIO)
        }
    }

    public func flush() throws(DiskError) {
        guard !isReadOnly else { return }
        while fdatasync(descriptor.rawValue) != 0 {
            if errno != EINTR { throw DiskError(.io, "fdatasync of \(path)", errno: errno) }
        }
    }

    public func discard(offset: UInt64, length: UInt64) throws(DiskError) {
        try checkRange(offset, length, "discard", writing: true)
        guard length > 0 else { return }
        let result: Int32
        if isBlockDevice {
            result = cvmfs_block_device_discard(descriptor.rawValue, offset, length)
        } else {
            result = cvmfs_fallocate(descriptor.rawValue, CVMFS_FALLOC_FL_PUNCH_HOLE | CVMFS_FALLOC_FL_KEEP_SIZE,
                                     Int64(offset), Int64(length))
        }
        guard result == 0 else {
            throw DiskError(-result == EOPNOTSUPP ? .unsupported : .io,
                            "discard of \(length) bytes at \(offset) on \(path)", errno: -result)
        }
    }

    public func writeZeroes(offset: UInt64, length: UInt64, deallocating: Bool) throws(DiskError) {
        try checkRange(offset, length, "write-zeroes", writing: true)
        guard length > 0 else { return }
        let result: Int32
        if isBlockDevice {
            // BLKZEROOUT guarantees zeros (BLKDISCARD does not) and never unmaps.
            result = cvmfs_block_device_zero_out(descriptor.rawValue, offset, length)
        } else {
            let mode = deallocating ? CVMFS_FALLOC_FL_PUNCH_HOLE : CVMFS_FALLOC_FL_ZERO_RANGE
            result = cvmfs_fallocate(descriptor.rawValue, mode | CVMFS_FALLOC_FL_KEEP_SIZE, Int64(offset), Int64(length))
        }
        if result == 0 { return }
        guard -result == EOPNOTSUPP || -result == EINVAL else {
            throw DiskError(.io, "write-zeroes of \(length) bytes at \(offset) on \(path)", errno: -result)
        }
        try writeZeroBytes(offset: offset, length: length)
    }
}
