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
    ///
    /// Its size is sealed: the process it is passed to cannot shrink it under this mapping, which
    /// would turn this process's next access into a SIGBUS.
    public init(creating name: String, byteCount: Int) throws(SystemError) {
        let fd = cvmfs_memfd_create(name, 1)
        guard fd >= 0 else { throw SystemError("memfd_create", errno: -fd, subject: name) }
        let owned = OwnedDescriptor(fd)
        guard byteCount > 0, ftruncate(fd, off_t(byteCount)) == 0 else {
            throw SystemError("ftruncate", errno: byteCount > 0 ? errno : EINVAL, subject: name)
        }
        let sealed = cvmfs_memfd_seal_size(fd)
        guard sealed == 0 else { throw SystemError("fcntl(F_ADD_SEALS)", errno: -sealed, subject: name) }
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

    /// True when the memfd's size is sealed against shrinking and growing.
    public var isSizeSealed: Bool { cvmfs_memfd_size_is_sealed(descriptor.rawValue) == 1 }

    /// Loads the 32-bit word at `offset` (4-byte aligned, inside the region) with acquire
    /// ordering: a word another process writes. Nil when `offset` is not such a word.
    public func loadWord(at offset: Int) -> UInt32? {
        guard let word = word(at: offset) else { return nil }
        return cvmfs_shared_load_acquire(word)
    }

    /// Stores the 32-bit word at `offset` with release ordering; false when `offset` is not a word of the region.
    @discardableResult
    public func storeWord(_ value: UInt32, at offset: Int) -> Bool {
        guard let word = word(at: offset) else { return false }
        cvmfs_shared_store_release(word, value)
        return true
    }

    /// A full barrier between this process's earlier stores and later loads of shared words.
    public static func fence() { cvmfs_shared_fence() }

    private func word(at offset: Int) -> UnsafeMutablePointer<UInt32>? {
        guard offset >= 0, offset % 4 == 0, offset <= byteCount - 4 else { return nil }
        return (base + offset).assumingMemoryBound(to: UInt32.self)
    }
}
