public import Hypervisor
public import VMFSCore

/// A virtual disk stored in a file on a VMFS volume, opened with the file's exclusive lock.
///
/// Reads and writes go straight to the volume through VMFSCore (never through FUSE); flush is
/// `fsync` on the volume (journal commit + device flush); discard punches a hole, and so does
/// write-zeroes when the guest allows unmapping (otherwise it writes zeros).
public final class VMFSDiskBackend: DiskBackend {
    public let handle: FileHandle
    public let byteCount: UInt64
    public let identifier: String
    public let isReadOnly: Bool

    /// Wraps an open file. The disk's size is the file's size rounded down to 512 bytes.
    public init(handle: FileHandle, identifier: String) {
        self.handle = handle
        byteCount = handle.size / 512 * 512
        self.identifier = identifier
        isReadOnly = handle.access == .readOnly
    }

    private func map(_ error: VMFSError) -> DiskError {
        switch error.code {
        case .readOnly, .permissionDenied: DiskError(.readOnly, error.description, errno: error.code.errno)
        case .unsupported: DiskError(.unsupported, error.description, errno: error.code.errno)
        case .fenced, .staleHandle: DiskError(.fenced, error.description, errno: error.code.errno)
        default: DiskError(.io, error.description, errno: error.code.errno)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        do {
            let count = try handle.read(into: buffer, at: offset)
            if count < buffer.count {
                UnsafeMutableRawBufferPointer(rebasing: buffer[count...]).initializeMemory(as: UInt8.self, repeating: 0)
            }
        } catch {
            throw map(error)
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        do { try handle.write(buffer, at: offset) } catch { throw map(error) }
    }

    public func flush() throws(DiskError) {
        do { try handle.sync() } catch { throw map(error) }
    }

    public func discard(offset: UInt64, length: UInt64) throws(DiskError) {
        do { try handle.punchHole(offset: offset, length: length) } catch { throw map(error) }
    }

    /// A punched hole reads back as zeros; without `deallocating`, zeros are written so the
    /// blocks stay allocated.
    public func writeZeroes(offset: UInt64, length: UInt64, deallocating: Bool) throws(DiskError) {
        guard deallocating else { return try writeZeroBytes(offset: offset, length: length) }
        try discard(offset: offset, length: length)
    }
}
