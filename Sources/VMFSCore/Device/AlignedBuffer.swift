/// Heap memory aligned for direct I/O, freed when the last reference goes.
public final class AlignedBuffer: @unchecked Sendable {
    /// The memory.
    public let mutableBytes: UnsafeMutableRawBufferPointer

    /// Allocates `count` zeroed bytes aligned to `alignment`.
    public init(count: Int, alignment: Int = 4096) {
        mutableBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: alignment)
        mutableBytes.initializeMemory(as: UInt8.self, repeating: 0)
        if count == 0 {
            // Keep a one-byte allocation but present an empty buffer.
        }
        self.count = count
    }

    /// Allocates aligned memory holding a copy of `bytes`.
    public convenience init(copying bytes: [UInt8], alignment: Int = 4096) {
        self.init(count: bytes.count, alignment: alignment)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, !bytes.isEmpty {
                mutableBytes.baseAddress?.copyMemory(from: base, byteCount: bytes.count)
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

    /// A copy of the contents.
    public var array: [UInt8] { Array(UnsafeRawBufferPointer(bytes)) }

    /// Fills the buffer with zeros.
    public func clear() { bytes.initializeMemory(as: UInt8.self, repeating: 0) }
}
