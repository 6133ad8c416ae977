internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// Answers READ requests with `splice(2)` from the device into `/dev/fuse` (`-o splice_read`):
/// the data never enters the daemon's memory.
///
/// The daemon asks VMFSCore where the requested bytes lie on the device
/// (``FileHandle/withDeviceExtents(offset:count:_:)``, which keeps the blocks from being freed
/// meanwhile) and hands libfuse a vector of device ranges (and zeros for holes). The device is
/// opened a second time, read-only and with `O_DIRECT`: other hosts write the shared device
/// behind this host's page cache, so it must not be read through that cache. Since Linux 6.5
/// a splice from an `O_DIRECT` file reads the device directly into the pipe's pages.
///
/// A request is spliced only when it is at least 8 KiB (libfuse copies smaller replies anyway)
/// and every device range is aligned to the 4 KiB direct-I/O unit (page-cache READs always are,
/// except the last bytes of a file); other requests, and files whose data lives in their
/// descriptor, are copied as usual. Where libfuse cannot splice (its pipe cannot grow), it
/// reads the ranges into page-aligned memory itself, which the alignment rule keeps valid for
/// `O_DIRECT`.
final class SpliceReader: @unchecked Sendable {
    private let descriptor: Int32
    private let alignment: UInt64 = 4096
    /// Zeros for holes, as long as the largest request.
    private let zeros: UnsafeMutableRawPointer
    private let maxTransfer: Int
    /// libfuse sends replies under two pages by copying: copy those here, with less overhead.
    private let minimumSplice = 8192
    /// Set at INIT: the kernel accepted spliced replies.
    let enabled = Atomic<Bool>(false)

    /// Opens `devicePath` for splicing; nil when it cannot be opened with `O_DIRECT`.
    init?(devicePath: String, maxTransfer: Int) {
        let fd = open(devicePath, O_RDONLY | O_CLOEXEC | LinuxConstants.oDirect)
        guard fd >= 0 else {
            Log.warning("splice_read: cannot open \(devicePath) with O_DIRECT (\(String(cString: strerror(errno)))); reads are copied")
            return nil
        }
        descriptor = fd
        zeros = UnsafeMutableRawPointer.allocate(byteCount: maxTransfer, alignment: 4096)
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: maxTransfer)
        self.maxTransfer = maxTransfer
    }

    deinit {
        close(descriptor)
        zeros.deallocate()
    }

    /// Answers `request` with `[offset, offset + size)` of `handle` by splicing. Returns false,
    /// without answering, when this request must be copied instead.
    func reply(_ request: Request, handle: FileHandle, size: Int, offset: UInt64) throws(VMFSError) -> Bool {
        guard enabled.load(ordering: .relaxed), size >= minimumSplice, size <= maxTransfer else { return false }
        let answered = try handle.withDeviceExtents(offset: offset, count: size) { extents -> Bool in
            guard !extents.isEmpty else { return false }
            for extent in extents {
                if let device = extent.deviceOffset, device % alignment != 0 || UInt64(extent.length) % alignment != 0 {
                    return false
                }
            }
            send(request, extents)
            return true
        }
        return answered ?? false
    }

    /// Builds a `fuse_bufvec` of device ranges and zero runs and replies with it.
    private func send(_ request: Request, _ extents: [FileExtent]) {
        let bufferStride = MemoryLayout<fuse_buf>.stride
        let firstBuffer = MemoryLayout<fuse_bufvec>.offset(of: \fuse_bufvec.buf) ?? 24
        let bytes = max(MemoryLayout<fuse_bufvec>.size, firstBuffer + extents.count * bufferStride)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: MemoryLayout<fuse_bufvec>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        defer { raw.deallocate() }
        let vector = raw.bindMemory(to: fuse_bufvec.self, capacity: 1)
        vector.pointee.count = extents.count
        vector.pointee.idx = 0
        vector.pointee.off = 0
        let buffers = (raw + firstBuffer).bindMemory(to: fuse_buf.self, capacity: extents.count)
        for (index, extent) in extents.enumerated() {
            var buffer = fuse_buf()
            buffer.size = extent.length
            if let device = extent.deviceOffset {
                buffer.flags = fuse_buf_flags(rawValue: FUSE_BUF_IS_FD.rawValue | FUSE_BUF_FD_SEEK.rawValue)
                buffer.fd = descriptor
                buffer.pos = off_t(device)
            } else {
                buffer.flags = fuse_buf_flags(rawValue: 0)
                buffer.mem = zeros
            }
            buffers[index] = buffer
        }
        let result = fuse_reply_data(request.raw, vector, FUSE_BUF_SPLICE_MOVE)
        if result < 0 { Log.debug("spliced READ reply failed: \(String(cString: strerror(-result)))") }
    }
}
