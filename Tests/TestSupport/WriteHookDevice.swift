public import VMFSCore

/// A device decorator for tests and fuzzers: `beforeWrite` runs ahead of every change the
/// device is asked for — a write, a batched write, a zeroing or a discard — with its kind,
/// offset and length, and can fail it (throw), delay it, or stop the process. Everything else
/// goes straight to `base`.
public final class WriteHookDevice: BlockDevice {
    /// What is about to change on the device.
    public enum Change: Sendable { case write, zero, discard }

    public let base: any BlockDevice
    private let beforeWrite: @Sendable (_ change: Change, _ offset: UInt64, _ length: UInt64) throws(VMFSError) -> Void

    public init(_ base: any BlockDevice,
                beforeWrite: @escaping @Sendable (_ change: Change, _ offset: UInt64, _ length: UInt64) throws(VMFSError) -> Void) {
        self.base = base
        self.beforeWrite = beforeWrite
    }

    public var path: String { base.path }
    public var size: UInt64 { base.size }
    public var alignment: Int { base.alignment }
    public var usesDirectIO: Bool { base.usesDirectIO }
    public var isReadOnly: Bool { base.isReadOnly }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try base.read(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try beforeWrite(.write, offset, UInt64(buffer.count))
        try base.write(buffer, at: offset)
    }

    public func flush() throws(VMFSError) { try base.flush() }

    public func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        try beforeWrite(.zero, offset, length)
        try base.zero(offset: offset, length: length)
    }

    public func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        try beforeWrite(.discard, offset, length)
        try base.discard(offset: offset, length: length)
    }

    public func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        for request in batch where request.kind == .write { try beforeWrite(.write, request.offset, UInt64(request.buffer.count)) }
        try base.perform(batch)
    }

    public func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) { try base.lockRange(offset: offset, length: length) }

    public func unlockRange(offset: UInt64, length: UInt64) { base.unlockRange(offset: offset, length: length) }
}
