import VMFSCore
import VMFSToolSupport

/// Reads the data of a file on the volume extent by extent (`SEEK_DATA`/`SEEK_HOLE`), so that
/// holes, however large the file claims to be, are never read.
struct ExtentCopy {
    let handle: FileHandle
    /// The file's name, for messages.
    let name: String
    /// The volume's data capacity: a file cannot hold more data than this (its block map would be corrupt).
    let volumeBytes: UInt64
    var chunk = 1 << 20

    /// Calls `store` with every chunk of the file's data that holds a non-zero byte, in order.
    func run(_ store: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var copied: UInt64 = 0
        var position: UInt64 = 0
        while let start = try handle.nextData(from: position) {
            let end = try handle.nextHole(from: start)
            position = start
            while position < end {
                let count = Int(min(UInt64(chunk), end - position))
                let read = try handle.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: position)
                guard read > 0 else { return }  // the file shrank while it was copied
                let piece = UnsafeRawBufferPointer(rebasing: buffer[0..<read])
                if !piece.isAllZeros { try store(position, piece) }
                position += UInt64(read)
                copied += UInt64(read)
                guard copied <= volumeBytes + UInt64(FormatConstants.sectorSize) else {
                    throw VMFSError(.corrupt, "'\(name)' claims more data than the volume holds (\(volumeBytes) bytes): "
                                    + "its block map is damaged; run fsck.vmfs")
                }
            }
        }
    }
}
