import Synchronization

/// A sparse device in memory, for unit tests. Unwritten bytes read as zero; a 64 TiB device
/// costs only what is written. Range locks serialize callers within the process.
public final class MemoryBlockDevice: BlockDevice {
    public let path: String
    public let size: UInt64
    public let alignment: Int = 512
    public let usesDirectIO = false
    public let isReadOnly: Bool
    private static let chunkSize = 64 * 1024
    private let storage: Storage

    /// The bytes and counters, shared between a device and its read-only views.
    private final class Storage: Sendable {
        let chunks = Mutex<[UInt64: [UInt8]]>([:])
        let counters = Mutex<IOCounters>(IOCounters())
        let rangeLocks = KeyedLocks<UInt64>()
    }

    /// Calls and bytes seen by a device.
    public struct IOCounters: Sendable {
        public var reads = 0
        public var writes = 0
        public var flushes = 0
        public var bytesWritten: UInt64 = 0
    }

    /// Counts of calls so far, for tests that check the I/O cost of an operation.
    public var ioCounters: IOCounters { storage.counters.withLock { $0 } }

    /// Creates an empty device of `size` bytes.
    public init(size: UInt64, path: String = "memory", readOnly: Bool = false) {
        self.size = size
        self.path = path
        self.isReadOnly = readOnly
        self.storage = Storage()
    }

    private init(sharing other: MemoryBlockDevice) {
        size = other.size
        path = other.path
        isReadOnly = true
        storage = other.storage
    }

    /// Returns a read-only view of the same bytes (as `fsck -n` would open the device).
    public func readOnlyView() -> MemoryBlockDevice { MemoryBlockDevice(sharing: self) }



    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard offset <= size, UInt64(buffer.count) <= size - offset else {
            throw VMFSError(.io, "read past the end of the device", location: .init(device: path, offset: offset))
        }
        storage.counters.withLock { $0.reads += 1 }
        storage.chunks.withLock { chunks in
            var done = 0
            while done < buffer.count {
                let position = offset + UInt64(done)
                let chunkIndex = position / UInt64(Self.chunkSize)
                let within = Int(position % UInt64(Self.chunkSize))
                let count = min(Self.chunkSize - within, buffer.count - done)
                let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + count)])
                if let chunk = chunks[chunkIndex] {
                    chunk.withUnsafeBytes { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[within..<(within + count)])) }
                } else {
                    target.initializeMemory(as: UInt8.self, repeating: 0)
                }
                done += count
            }
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path)) }
        guard offset <= size, UInt64(buffer.count) <= size - offset else {
            throw VMFSError(.io, "write past the end of the device", location: .init(device: path, offset: offset))
        }
        storage.counters.withLock { $0.writes += 1; $0.bytesWritten += UInt64(buffer.count) }
        storage.chunks.withLock { chunks in
            var done = 0
            while done < buffer.count {
                let position = offset + UInt64(done)
                let chunkIndex = position / UInt64(Self.chunkSize)
                let within = Int(position % UInt64(Self.chunkSize))
                let count = min(Self.chunkSize - within, buffer.count - done)
                var chunk = chunks[chunkIndex] ?? [UInt8](repeating: 0, count: Self.chunkSize)
                chunk.withUnsafeMutableBytes {
                    UnsafeMutableRawBufferPointer(rebasing: $0[within..<(within + count)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[done..<(done + count)]))
                }
                chunks[chunkIndex] = chunk
                done += count
            }
        }
    }

    public func flush() throws(VMFSError) { storage.counters.withLock { $0.flushes += 1 } }

    public func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path)) }
        guard offset <= size, length <= size - offset else {
            throw VMFSError(.io, "zeroing past the end of the device", location: .init(device: path, offset: offset))
        }
        var position = offset
        let end = offset + length
        while position < end {
            let chunkIndex = position / UInt64(Self.chunkSize)
            let chunkStart = chunkIndex * UInt64(Self.chunkSize)
            let chunkEnd = chunkStart + UInt64(Self.chunkSize)
            if position == chunkStart && end >= chunkEnd {
                _ = storage.chunks.withLock { $0.removeValue(forKey: chunkIndex) }
                position = chunkEnd
            } else {
                let count = Int(min(chunkEnd, end) - position)
                let zeros = AlignedBuffer(count: count)
                try zeros.withBytes { bytes throws(VMFSError) in try write(UnsafeRawBufferPointer(bytes), at: position) }
                position += UInt64(count)
            }
        }
    }

    public func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        try zero(offset: offset, length: length)
    }

    public func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        for request in batch {
            switch request.kind {
            case .read: try read(into: request.buffer, at: request.offset)
            case .write: try write(UnsafeRawBufferPointer(request.buffer), at: request.offset)
            }
        }
    }

    public func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) {
        storage.rangeLocks.lock(offset)
    }

    public func unlockRange(offset: UInt64, length: UInt64) {
        storage.rangeLocks.unlock(offset)
    }

    /// Bytes held in memory (for tests of sparseness).
    public var allocatedBytes: Int { storage.chunks.withLock { $0.count * Self.chunkSize } }
}
