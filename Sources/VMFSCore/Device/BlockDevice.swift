/// A device that holds a VMFS volume: an image file, a block device, or memory.
///
/// Offsets and lengths are in bytes. Implementations accept any alignment; aligned requests
/// (to ``alignment``, in offset, length and buffer address) take the direct path. An unaligned
/// write is a read-modify-write of the sectors at its edges; implementations serialize those
/// (``EdgeSectorLocks``), so concurrent writes to different bytes of one sector both land.
public protocol BlockDevice: AnyObject, Sendable {
    /// The path the device was opened from (for messages).
    var path: String { get }
    /// Size in bytes.
    var size: UInt64 { get }
    /// Required alignment of offset, length and memory for the direct path.
    var alignment: Int { get }
    /// True when I/O bypasses the host page cache (`O_DIRECT`).
    var usesDirectIO: Bool { get }
    /// True when the device was opened read-only.
    var isReadOnly: Bool { get }

    /// Reads exactly `buffer.count` bytes at `offset`. Bytes past the end of an image file read as zero.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError)
    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError)
    /// Makes every completed write durable (`fdatasync`, or a cache flush on a block device).
    func flush() throws(VMFSError)
    /// Makes the range read as zeros, deallocating it where the device can (hole punch, WRITE ZEROES).
    func zero(offset: UInt64, length: UInt64) throws(VMFSError)
    /// Tells the device the range is unused. Afterwards the range reads as zeros or as old data.
    func discard(offset: UInt64, length: UInt64) throws(VMFSError)
    /// Runs several reads and writes, concurrently where the device can (io_uring), and returns
    /// when all have completed.
    func perform(_ batch: [DeviceRequest]) throws(VMFSError)
    /// Takes a byte-range lock that excludes other processes' (and other opens') locks on the
    /// same range: the building block of the atomic sector update.
    func lockRange(offset: UInt64, length: UInt64) throws(VMFSError)
    /// Drops a lock taken with ``lockRange(offset:length:)``.
    func unlockRange(offset: UInt64, length: UInt64)
}

/// One read or write of a batch.
public struct DeviceRequest: @unchecked Sendable {
    /// Reading into or writing from the buffer.
    public enum Kind: Sendable { case read, write }
    public var kind: Kind
    /// The device offset.
    public var offset: UInt64
    /// The memory; for a read it must stay valid and unshared until ``BlockDevice/perform(_:)`` returns.
    public var buffer: UnsafeMutableRawBufferPointer

    public init(kind: Kind, offset: UInt64, buffer: UnsafeMutableRawBufferPointer) {
        self.kind = kind
        self.offset = offset
        self.buffer = buffer
    }
}

extension BlockDevice {
    /// Reads `count` bytes at `offset` into a new array.
    public func read(count: Int, at offset: UInt64) throws(VMFSError) -> [UInt8] {
        let buffer = AlignedBuffer(count: count, alignment: max(alignment, 4096), zeroed: false)
        try read(into: buffer.bytes, at: offset)
        return buffer.array
    }

    /// Writes `bytes` at `offset`.
    public func write(bytes: [UInt8], at offset: UInt64) throws(VMFSError) {
        let buffer = AlignedBuffer(copying: bytes, alignment: max(alignment, 4096))
        try buffer.withBytes { bytes throws(VMFSError) in try write(UnsafeRawBufferPointer(bytes), at: offset) }
    }
}
