internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// An image file or a block device (`/dev/loopN`, a LUN), opened with `O_DIRECT` where the
/// filesystem or driver supports it, with batched I/O through io_uring.
public final class FileBlockDevice: BlockDevice {
    public let path: String
    public let size: UInt64
    public let alignment: Int
    public let usesDirectIO: Bool
    public let isReadOnly: Bool
    /// True for a block device node, false for a regular (image) file.
    public let isBlockDevice: Bool

    let descriptor: Int32
    private let rings: IOUringPool?
    private let rangeLocks = KeyedLocks<UInt64>()
    private let edgeLocks = EdgeSectorLocks()

    /// Opens `path`.
    ///
    /// - Parameters:
    ///   - path: An image file or a block device.
    ///   - readOnly: Open without write access; writes then fail with ``VMFSError/Code/readOnly``.
    ///   - directIO: Use `O_DIRECT` when the device supports it (the default).
    /// - Throws: ``VMFSError`` naming the path when it cannot be opened or sized.
    public init(path: String, readOnly: Bool = false, directIO: Bool = true) throws(VMFSError) {
        self.path = path
        self.isReadOnly = readOnly
        let access = readOnly ? O_RDONLY : O_RDWR
        var fd: Int32 = -1
        var direct = false
        if directIO {
            fd = open(path, access | O_CLOEXEC | CVMFS_O_DIRECT)
            direct = fd >= 0
            if fd < 0 && errno != EINVAL {
                throw VMFSError.system("open", errno: errno, path: path)
            }
        }
        if fd < 0 {
            fd = open(path, access | O_CLOEXEC)
            guard fd >= 0 else { throw VMFSError.system("open", errno: errno, path: path) }
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = VMFSError.system("fstat", errno: errno, path: path)
            close(fd)
            throw error
        }
        let kind = info.st_mode & S_IFMT
        if kind == S_IFBLK {
            var bytes: UInt64 = 0
            let result = cvmfs_block_device_size(fd, &bytes)
            guard result == 0 else {
                close(fd)
                throw VMFSError.system("ioctl(BLKGETSIZE64)", errno: -result, path: path)
            }
            var sector: Int32 = 512
            _ = cvmfs_block_device_logical_sector_size(fd, &sector)
            size = bytes
            alignment = max(Int(sector), 512)
            isBlockDevice = true
        } else if kind == S_IFREG {
            size = UInt64(info.st_size)
            var memoryAlignment: UInt32 = 0
            var offsetAlignment: UInt32 = 0
            if cvmfs_direct_io_alignment(fd, &memoryAlignment, &offsetAlignment) == 0, offsetAlignment > 0 {
                alignment = max(Int(offsetAlignment), Int(memoryAlignment), 512)
            } else {
                alignment = 4096
            }
            isBlockDevice = false
        } else {
            close(fd)
            throw VMFSError(.invalidArgument, "\(path) is neither a regular file nor a block device",
                            location: .init(device: path))
        }
        descriptor = fd
        usesDirectIO = direct
        rings = IOUringPool()
    }

    deinit { close(descriptor) }

    private func isAligned(_ offset: UInt64, _ count: Int, _ address: UnsafeRawPointer?) -> Bool {
        guard usesDirectIO else { return true }
        let a = UInt64(alignment)
        let addressValue = UInt64(UInt(bitPattern: address))
        return offset % a == 0 && UInt64(count) % a == 0 && addressValue % a == 0
    }

    /// Refuses a range that does not lie inside the device: a write there would extend an image
    /// file (or fail on a block device), and no offset computed from valid metadata lands there.
    private func checkInside(_ offset: UInt64, _ length: UInt64, _ operation: String) throws(VMFSError) {
        guard offset <= size, length <= size - offset else {
            throw VMFSError(.invalidArgument, "\(operation) of \(length) bytes at byte \(offset) lies outside the device (\(size) bytes)",
                            location: .init(device: path, offset: offset))
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard let target = buffer.baseAddress, buffer.count > 0 else { return }
        // Past the end reads as zeros, but the offset must still be one pread can take.
        guard offset <= UInt64(Int64.max) - UInt64(buffer.count) else {
            throw VMFSError(.invalidArgument, "read at byte \(offset) is beyond any device", location: .init(device: path, offset: offset))
        }
        if isAligned(offset, buffer.count, target) {
            try rawRead(into: buffer, at: offset)
            return
        }
        let a = UInt64(alignment)
        let start = offset / a * a
        let end = (offset + UInt64(buffer.count) + a - 1) / a * a
        let bounce = AlignedBuffer(count: Int(end - start), alignment: max(alignment, 4096), zeroed: false)
        try rawRead(into: bounce.bytes, at: start)
        let skip = Int(offset - start)
        target.copyMemory(from: UnsafeRawPointer(bounce.start) + skip, byteCount: buffer.count)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard !isReadOnly else {
            throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path, offset: offset))
        }
        guard let source = buffer.baseAddress, buffer.count > 0 else { return }
        try checkInside(offset, UInt64(buffer.count), "write")
        if isAligned(offset, buffer.count, source) {
            try rawWrite(buffer, at: offset)
            return
        }
        try edgeLocks.withEdges(of: [(offset, buffer.count)], alignment: alignment) { () throws(VMFSError) in
            try writeThroughBounce(source, count: buffer.count, at: offset)
        }
    }

    /// Read-modify-write of the edge sectors through an aligned bounce buffer (the edge sectors held).
    private func writeThroughBounce(_ source: UnsafeRawPointer, count: Int, at offset: UInt64) throws(VMFSError) {
        let a = UInt64(alignment)
        let start = offset / a * a
        let end = (offset + UInt64(count) + a - 1) / a * a
        let bounce = AlignedBuffer(count: Int(end - start), alignment: max(alignment, 4096), zeroed: false)
        let skip = Int(offset - start)
        let headPartial = start < offset
        let tailPartial = end > offset + UInt64(count)
        if headPartial {
            try rawRead(into: UnsafeMutableRawBufferPointer(rebasing: bounce.bytes[0..<alignment]), at: start)
        }
        if tailPartial && !(headPartial && end - start == a) {
            let last = Int(end - start) - alignment
            try rawRead(into: UnsafeMutableRawBufferPointer(rebasing: bounce.bytes[last..<(last + alignment)]), at: end - a)
        }
        (bounce.start + skip).copyMemory(from: source, byteCount: count)
        try bounce.withBytes { bytes throws(VMFSError) in try rawWrite(UnsafeRawBufferPointer(bytes), at: start) }
    }

    private func rawRead(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 {
                // Past the end of an image file: the rest reads as zeros.
                (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            if errno == EINTR { continue }
            throw VMFSError.system("pread", errno: errno, path: path, offset: offset + UInt64(done))
        }
    }

    private func rawWrite(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pwrite(descriptor, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw VMFSError.system("pwrite", errno: n < 0 ? errno : EIO, path: path, offset: offset + UInt64(done))
        }
    }

    public func flush() throws(VMFSError) {
        guard !isReadOnly else { return }
        while fdatasync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw VMFSError.system("fdatasync", errno: errno, path: path)
        }
    }

    public func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path)) }
        guard length > 0 else { return }
        try checkInside(offset, length, "zeroing")
        if isBlockDevice {
            if cvmfs_block_device_zero_out(descriptor, offset, length) == 0 { return }
        } else {
            let punch = CVMFS_FALLOC_FL_PUNCH_HOLE | CVMFS_FALLOC_FL_KEEP_SIZE
            if cvmfs_fallocate(descriptor, punch, Int64(offset), Int64(length)) == 0 { return }
            if cvmfs_fallocate(descriptor, CVMFS_FALLOC_FL_ZERO_RANGE, Int64(offset), Int64(length)) == 0 { return }
        }
        try writeZeros(offset: offset, length: length)
    }

    private func writeZeros(offset: UInt64, length: UInt64) throws(VMFSError) {
        let chunk = 1 << 20
        let zeros = AlignedBuffer(count: chunk, alignment: max(alignment, 4096))
        var position = offset
        let end = offset + length
        while position < end {
            let count = Int(min(UInt64(chunk), end - position))
            try zeros.withBytes { bytes throws(VMFSError) in try write(UnsafeRawBufferPointer(rebasing: bytes[0..<count]), at: position) }
            position += UInt64(count)
        }
    }

    public func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        guard !isReadOnly, length > 0 else { return }
        try checkInside(offset, length, "discard")
        if isBlockDevice {
            _ = cvmfs_block_device_discard(descriptor, offset, length)
        } else {
            _ = cvmfs_fallocate(descriptor, CVMFS_FALLOC_FL_PUNCH_HOLE | CVMFS_FALLOC_FL_KEEP_SIZE,
                                Int64(offset), Int64(length))
        }
    }

    public func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        if batch.isEmpty { return }
        if batch.contains(where: { $0.kind == .write }) && isReadOnly {
            throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path))
        }
        for request in batch where request.kind == .write { try checkInside(request.offset, UInt64(request.buffer.count), "write") }
        let allAligned = batch.allSatisfy { isAligned($0.offset, $0.buffer.count, $0.buffer.baseAddress) }
        if batch.count > 1, allAligned, let rings {
            do {
                try rings.run(descriptor: descriptor, requests: batch)
                return
            } catch let error where error.code == .unsupported {
                // io_uring unavailable at run time: fall through to plain calls.
            } catch {
                throw error.on(device: path)
            }
        }
        for request in batch {
            switch request.kind {
            case .read: try read(into: request.buffer, at: request.offset)
            case .write: try write(UnsafeRawBufferPointer(request.buffer), at: request.offset)
            }
        }
    }

    /// How long ``lockRange(offset:length:)`` waits for another process before giving up. The
    /// critical sections it guards take microseconds; a process that holds one for this long is
    /// frozen (stopped) or dead-locked, and waiting forever would freeze this host too.
    public static let rangeLockWaitLimitNanoseconds: UInt64 = 10_000_000_000

    public func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) {
        rangeLocks.lock(offset)
        let deadline = Clock.monotonicNanoseconds + Self.rangeLockWaitLimitNanoseconds
        var pause: UInt64 = 50_000
        while true {
            let result = cvmfs_ofd_lock(descriptor, Int16(F_WRLCK), Int64(offset), Int64(length), 0)
            if result == 0 { return }
            guard result == -EAGAIN || result == -EACCES else {
                rangeLocks.unlock(offset)
                throw VMFSError.system("fcntl(F_OFD_SETLK)", errno: -result, path: path, offset: offset)
            }
            if Clock.monotonicNanoseconds >= deadline {
                rangeLocks.unlock(offset)
                throw VMFSError(.timedOut, "the sector at byte \(offset) stayed locked by another process for "
                                + "\(Self.rangeLockWaitLimitNanoseconds / 1_000_000_000) s (a stopped host?)",
                                location: .init(device: path, offset: offset))
            }
            Clock.sleep(nanoseconds: pause)
            pause = min(pause * 2, 5_000_000)
        }
    }

    /// True when another process (or another open of the device) holds a range lock overlapping
    /// `[offset, offset + length)` right now.
    public func isRangeLockedElsewhere(offset: UInt64, length: UInt64) -> Bool {
        cvmfs_ofd_range_locked(descriptor, Int64(offset), Int64(length)) == 1
    }

    public func unlockRange(offset: UInt64, length: UInt64) {
        _ = cvmfs_ofd_lock(descriptor, Int16(F_UNLCK), Int64(offset), Int64(length), 0)
        rangeLocks.unlock(offset)
    }
}
