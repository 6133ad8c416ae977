public import VMFSCore

/// A device decorator that turns every attempt to write outside the device into a crash the
/// fuzzer reports, before the write reaches the device below.
///
/// The devices below refuse such a write with an error; that error is the last line of defence,
/// and a harness must see the attempt itself: it means a value read from disk reached a device
/// offset without a range check. A read-only guard also crashes on *any* write or zeroing
/// (`fsck.vmfs -n`, `vmfs info` and the other inspectors must write nothing).
public final class GuardedDevice: BlockDevice {
    public let base: any BlockDevice
    private let writable: Bool
    /// The size the device had when the guard was made; it must never change.
    public let size: UInt64

    /// Guards `base`; `writable: false` makes every write a crash.
    public init(_ base: any BlockDevice, writable: Bool = true) {
        self.base = base
        self.writable = writable
        size = base.size
    }

    public var path: String { base.path }
    public var alignment: Int { base.alignment }
    public var usesDirectIO: Bool { base.usesDirectIO }
    public var isReadOnly: Bool { base.isReadOnly }

    private func check(_ what: String, offset: UInt64, length: UInt64) {
        guard writable else { fatalError("fuzz oracle: \(what) of \(length) bytes at \(offset) through a read-only view") }
        guard offset <= size, length <= size - offset else {
            fatalError("fuzz oracle: \(what) of \(length) bytes at \(offset) lies outside the device (\(size) bytes)")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try base.read(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        check("write", offset: offset, length: UInt64(buffer.count))
        try base.write(buffer, at: offset)
    }

    public func flush() throws(VMFSError) { try base.flush() }

    public func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        check("zeroing", offset: offset, length: length)
        try base.zero(offset: offset, length: length)
    }

    public func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        check("discard", offset: offset, length: length)
        try base.discard(offset: offset, length: length)
    }

    public func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        for request in batch where request.kind == .write {
            check("batched write", offset: request.offset, length: UInt64(request.buffer.count))
        }
        try base.perform(batch)
    }

    public func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) {
        try base.lockRange(offset: offset, length: length)
    }

    public func unlockRange(offset: UInt64, length: UInt64) { base.unlockRange(offset: offset, length: length) }
}
