internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A `memfd` mapped shared: memory two processes exchange by passing the descriptor.
///
/// Every access through ``pointer(at:count:)`` is bounds-checked against the mapping, so an offset
/// or length received from another process can never reach outside it.
public final class SharedMemoryRegion: @unchecked Sendable {
    /// The memfd; pass it to the other process.
    public let descriptor: OwnedDescriptor
    /// Mapped bytes.
    public let byteCount: Int
    private let base: UnsafeMutableRawPointer

    /// Creates a new memfd of `byteCount` bytes (zero-filled) and maps it.
    public init(creating name: String, byteCount: Int) throws(SystemError) {
        let fd = cvmfs_memfd_create(name, 0)
        guard fd >= 0 else { throw SystemError("memfd_create", errno: -fd, subject: name) }
        let owned = OwnedDescriptor(fd)
        guard byteCount > 0, ftruncate(fd, off_t(byteCount)) == 0 else {
            throw SystemError("ftruncate", errno: byteCount > 0 ? errno : EINVAL, subject: name)
        }
        guard let mapped = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SystemError("mmap", errno: errno, subject: name)
        }
        descriptor = owned
        self.byteCount = byteCount
        base = mapped
    }

    /// Maps a memfd received from another process; its size is what `fstat` reports, which must
    /// be `expectedByteCount` (the size agreed on in the protocol).
    public init(mapping received: OwnedDescriptor, expectedByteCount: Int) throws(SystemError) {
        var status = stat()
        guard fstat(received.rawValue, &status) == 0 else { throw SystemError("fstat", errno: errno, subject: "shared memory") }
        guard expectedByteCount > 0, Int(status.st_size) == expectedByteCount else {
            throw SystemError("fstat", errno: EINVAL, subject: "shared memory of \(status.st_size) bytes, expected \(expectedByteCount)")
        }
        guard let mapped = mmap(nil, expectedByteCount, PROT_READ | PROT_WRITE, MAP_SHARED, received.rawValue, 0),
              mapped != MAP_FAILED else {
            throw SystemError("mmap", errno: errno, subject: "shared memory")
        }
        descriptor = received
        byteCount = expectedByteCount
        base = mapped
    }

    deinit { munmap(base, byteCount) }

    /// The bytes at `[offset, offset + count)`, or nil when any of them is outside the region.
    public func pointer(at offset: UInt64, count: UInt64) -> UnsafeMutableRawPointer? {
        guard offset <= UInt64(byteCount), count <= UInt64(byteCount) - offset else { return nil }
        return base + Int(offset)
    }
}
