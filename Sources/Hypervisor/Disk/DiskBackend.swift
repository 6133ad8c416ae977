/// An error from a ``DiskBackend``.
public struct DiskError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The category of a ``DiskError``.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The request reaches past the end of the disk.
        public static let outOfRange = Code("outOfRange")
        /// The disk is read-only.
        public static let readOnly = Code("readOnly")
        /// The operation is not supported by this backend (for example discard).
        public static let unsupported = Code("unsupported")
        /// The underlying storage failed.
        public static let io = Code("io")
        /// This host may not write to the storage now (its cluster membership is fenced or lost).
        public static let fenced = Code("fenced")
    }

    public var code: Code
    /// What failed, naming the disk and the offset.
    public var message: String
    /// The `errno` of the failing system call, if any.
    public var errno: Int32?

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        errno.map { "\(code): \(message) (errno \($0))" } ?? "\(code): \(message)"
    }
}

/// Storage behind a virtio-blk device: a plain file, a block device, or a virtual disk on VMFS.
///
/// Calls come from the VMM's I/O threads, several at once per device (a guest keeps many
/// requests in flight); offsets and lengths are validated against ``byteCount`` before the call.
public protocol DiskBackend: Sendable {
    /// Size of the disk in bytes; a multiple of 512. The guest sees `byteCount / 512` sectors.
    var byteCount: UInt64 { get }
    /// A short identifier returned to the guest for VIRTIO_BLK_T_GET_ID (at most 20 bytes are used).
    var identifier: String { get }
    /// True when writes, flushes and discards must be refused (advertised as VIRTIO_BLK_F_RO).
    var isReadOnly: Bool { get }

    /// Fills `buffer` with the bytes at `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError)
    /// Writes `buffer` at `offset`. The data may sit in a volatile cache until ``flush()``.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError)
    /// Makes every completed write durable (a device cache flush; `fdatasync` for a file).
    func flush() throws(DiskError)
    /// Deallocates `[offset, offset + length)` where the storage can (virtio-blk DISCARD): a hint
    /// that the data is no longer needed. What the range reads afterwards is unspecified (zeros
    /// on a sparse file and on VMFS; on a block device, whatever the device returns).
    func discard(offset: UInt64, length: UInt64) throws(DiskError)
    /// Makes `[offset, offset + length)` read as zeros, guaranteed (virtio-blk WRITE_ZEROES).
    ///
    /// - Parameter deallocating: The space may be given back (a hole punch) instead of staying
    ///   allocated (the guest set VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP).
    func writeZeroes(offset: UInt64, length: UInt64, deallocating: Bool) throws(DiskError)
}

extension DiskBackend {
    public var isReadOnly: Bool { false }

    /// Writes zeros over the range (the default ``writeZeroes(offset:length:deallocating:)``).
    public func writeZeroes(offset: UInt64, length: UInt64, deallocating: Bool) throws(DiskError) {
        try writeZeroBytes(offset: offset, length: length)
    }

    /// Writes zeros over `[offset, offset + length)` in 1 MiB pieces: what a backend falls back
    /// to when it has no cheaper way to guarantee zeros.
    public func writeZeroBytes(offset: UInt64, length: UInt64) throws(DiskError) {
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < length {
            let count = Int(min(UInt64(zeros.count), length - done))
            try write(UnsafeRawBufferPointer(rebasing: zeros[0..<count]), at: offset + done)
            done += UInt64(count)
        }
    }
}
