public import VMFSCore

/// The non-zero bytes of a device, kept in memory so that every fuzz input starts from the
/// same image: a sparse copy (a 160 MiB volume holds a few MiB of metadata and data).
public struct ImageSnapshot: Sendable {
    public static let chunkSize = 64 * 1024
    /// The size of the device the snapshot was taken of.
    public let size: UInt64
    /// Non-zero chunks in device order.
    public let chunks: [(offset: UInt64, bytes: [UInt8])]
    private let chunkIndex: [UInt64: Int]

    /// Reads all of `device` and keeps the chunks that are not all zero.
    public init(of device: any BlockDevice) throws(VMFSError) {
        size = device.size
        var kept: [(UInt64, [UInt8])] = []
        var offset: UInt64 = 0
        while offset < size {
            let count = Int(min(UInt64(Self.chunkSize), size - offset))
            let bytes = try device.read(count: count, at: offset)
            if bytes.contains(where: { $0 != 0 }) { kept.append((offset, bytes)) }
            offset += UInt64(count)
        }
        chunks = kept
        chunkIndex = Dictionary(uniqueKeysWithValues: kept.enumerated().map { ($0.element.0, $0.offset) })
    }

    /// A new in-memory device holding the snapshot.
    public func memoryDevice() -> MemoryBlockDevice {
        let device = MemoryBlockDevice(size: size, path: "fuzz-image")
        for chunk in chunks {
            do { try device.write(bytes: chunk.bytes, at: chunk.offset) } catch {
                fatalError("restoring a snapshot into memory failed: \(error)")
            }
        }
        return device
    }

    /// The sector at `offset` as it is in the snapshot.
    public func sector(at offset: UInt64) -> [UInt8] {
        let chunkOffset = offset / UInt64(Self.chunkSize) * UInt64(Self.chunkSize)
        guard let index = chunkIndex[chunkOffset] else { return [UInt8](repeating: 0, count: 4096) }
        let start = Int(offset - chunkOffset)
        return Array(chunks[index].bytes[start..<(start + 4096)])
    }
}
