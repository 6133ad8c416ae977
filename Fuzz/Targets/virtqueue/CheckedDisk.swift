@testable import Hypervisor
import Synchronization

/// An in-memory disk that checks what virtio-blk asks of it: every offset and length inside the
/// disk (the device must validate sectors before calling), every buffer inside guest RAM (the
/// device must resolve guest addresses with bounds checks), and bounded work per notify.
final class CheckedDisk: DiskBackend {
    let memory: GuestMemory
    let byteCount: UInt64
    let isReadOnly: Bool
    var identifier: String { "fuzz-disk" }
    /// Bytes moved and requests served since the last ``resetWork()``.
    private let work = Mutex<(bytes: UInt64, requests: Int)>((0, 0))

    init(memory: GuestMemory, sectors: UInt64, readOnly: Bool) {
        self.memory = memory
        byteCount = sectors * 512
        isReadOnly = readOnly
    }

    /// Work done since the last call, then zero.
    func resetWork() -> (bytes: UInt64, requests: Int) {
        work.withLock { w in
            defer { w = (0, 0) }
            return w
        }
    }

    private func check(_ operation: String, offset: UInt64, length: UInt64, buffer: UnsafeRawBufferPointer?) {
        guard offset <= byteCount, length <= byteCount - offset else {
            fatalError("fuzz oracle: virtio-blk asked the disk to \(operation) \(length) bytes at \(offset) of \(byteCount)")
        }
        if let buffer, buffer.count > 0 {
            guard let start = buffer.baseAddress else { fatalError("fuzz oracle: a buffer without an address") }
            let lower = UInt(bitPattern: memory.base)
            let upper = lower + UInt(memory.size)
            let first = UInt(bitPattern: start)
            guard first >= lower, first + UInt(buffer.count) <= upper else {
                fatalError("fuzz oracle: virtio-blk handed the disk a buffer outside guest RAM")
            }
        }
        if isReadOnly && operation != "read" && operation != "flush" { fatalError("fuzz oracle: virtio-blk asked a read-only disk to \(operation)") }
        work.withLock { $0.bytes += length; $0.requests += 1 }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        check("read", offset: offset, length: UInt64(buffer.count), buffer: UnsafeRawBufferPointer(buffer))
        // The bytes are not kept; touching both ends is enough for the bounds oracles.
        if let start = buffer.baseAddress, buffer.count > 0 {
            start.storeBytes(of: 0xA5, as: UInt8.self)
            (start + buffer.count - 1).storeBytes(of: 0x5A, as: UInt8.self)
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        check("write", offset: offset, length: UInt64(buffer.count), buffer: buffer)
        if let start = buffer.baseAddress, buffer.count > 0 {
            _ = start.load(as: UInt8.self)
            _ = (start + buffer.count - 1).load(as: UInt8.self)
        }
    }

    func flush() throws(DiskError) { check("flush", offset: 0, length: 0, buffer: nil) }

    func discard(offset: UInt64, length: UInt64) throws(DiskError) {
        check("discard", offset: offset, length: length, buffer: nil)
    }

    func writeZeroes(offset: UInt64, length: UInt64, deallocating: Bool) throws(DiskError) {
        check("write zeroes to", offset: offset, length: length, buffer: nil)
    }
}
