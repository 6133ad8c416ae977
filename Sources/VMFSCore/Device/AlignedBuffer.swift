/// Heap memory aligned for direct I/O, freed when the last reference goes.
public final class AlignedBuffer: @unchecked Sendable {
    /// The memory.
    public let mutableBytes: UnsafeMutableRawBufferPointer
    /// The first byte (never nil: even a zero-byte buffer allocates one byte).
    public let start: UnsafeMutableRawPointer

    /// Allocates `count` bytes aligned to `alignment`, zeroed unless `zeroed` is false (bounce
    /// buffers that are filled completely before use skip the cost).
    public init(count: Int, alignment: Int = 4096, zeroed: Bool = true) {
        // A zero-byte request still allocates one byte, so the base address is never nil.
        start = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: alignment)
        mutableBytes = UnsafeMutableRawBufferPointer(start: start, count: max(count, 1))
        if zeroed { mutableBytes.initializeMemory(as: UInt8.self, repeating: 0) }
        self.count = count
    }

    /// Allocates aligned memory holding a copy of `bytes`.
    public convenience init(copying bytes: [UInt8], alignment: Int = 4096) {
        self.init(count: bytes.count, alignment: alignment, zeroed: false)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, !bytes.isEmpty {
                start.copyMemory(from: base, byteCount: bytes.count)
            }
        }
    }

    deinit { mutableBytes.deallocate() }

    /// The usable length.
    public let count: Int

    /// The buffer restricted to its usable length.
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: mutableBytes[0..<count])
    }

    /// Runs `body` with the buffer's bytes and keeps the buffer alive until `body` returns.
    ///
    /// Swift may free an object right after its last use, so a pointer taken from ``bytes`` or
    /// ``start`` and handed to I/O that outlives that use (a command in flight, a batch built
    /// first and run later) must be used inside this scope.
    public func withBytes<Result, Failure: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result) throws(Failure) -> Result {
        try withExtendedLifetime(self) { () throws(Failure) -> Result in try body(bytes) }
    }

    /// A copy of the contents.
    public var array: [UInt8] { Array(UnsafeRawBufferPointer(bytes)) }

    /// Fills the buffer with zeros.
    public func clear() { bytes.initializeMemory(as: UInt8.self, repeating: 0) }
}
