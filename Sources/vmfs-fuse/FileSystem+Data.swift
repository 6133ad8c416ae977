internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// READ, WRITE and FALLOCATE: file data, straight between the kernel and the device.
extension FileSystem {
    func read(_ request: Request, size: Int, offset: off_t, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("read") { () throws(VMFSError) in
            let open = try openHandle(info)
            guard offset >= 0 else { throw VMFSError(.invalidArgument, "negative read offset \(offset)") }
            if let splicer, try splicer.reply(request, handle: open.handle, size: size, offset: UInt64(offset)) { return }
            try buffers.withBuffer(count: size) { (buffer) throws(VMFSError) in
                let count = try open.handle.read(into: buffer, at: UInt64(offset))
                request.reply(buffer: buffer.baseAddress, count: count)
            }
        }
    }

    func write(_ request: Request, data: UnsafePointer<CChar>?, size: Int, offset: off_t,
               info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("write") { () throws(VMFSError) in
            let open = try openHandle(info)
            guard open.writable else { throw VMFSError(.permissionDenied, "the file is not open for writing") }
            guard offset >= 0, let data else { throw VMFSError(.invalidArgument, "bad write at offset \(offset)") }
            let aligned = offset % 4096 == 0 && size % 4096 == 0
            do throws(VMFSError) {
                try buffers.withBuffer(count: size) { (buffer) throws(VMFSError) in
                    // The payload sits at an unaligned place in libfuse's buffer: one copy into
                    // aligned memory lets the device take it with O_DIRECT as it is.
                    buffer.copyMemory(from: UnsafeRawBufferPointer(start: data, count: size))
                    try slots.withWriteLock(open.slot, exclusive: !aligned) { () throws(VMFSError) in
                        try open.handle.write(UnsafeRawBufferPointer(buffer), at: UInt64(offset))
                    }
                }
            } catch {
                writeFailed(open)
                throw error
            }
            open.dirty.store(true, ordering: .releasing)
            request.reply(written: size)
        }
    }

    /// `fallocate(2)`: preallocation (optionally keeping the size), hole punching, and zeroing
    /// a range (a punched hole, then preallocated). Collapse and insert are refused.
    func fallocate(_ request: Request, mode: Int32, offset: off_t, length: off_t, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("fallocate") { () throws(VMFSError) in
            let open = try openHandle(info)
            guard open.writable else { throw VMFSError(.permissionDenied, "the file is not open for writing") }
            guard offset >= 0, length > 0 else { throw VMFSError(.invalidArgument, "bad range \(offset)+\(length)") }
            let start = UInt64(offset)
            let count = UInt64(length)
            let keepSize = mode & LinuxConstants.fallocKeepSize != 0
            let known = LinuxConstants.fallocKeepSize | LinuxConstants.fallocPunchHole | LinuxConstants.fallocZeroRange
            guard mode & ~known == 0 else {
                throw VMFSError(.unsupported, "fallocate mode 0x\(String(mode, radix: 16)) is not supported")
            }
            try slots.withWriteLock(open.slot, exclusive: true) { () throws(VMFSError) in
                if mode & LinuxConstants.fallocPunchHole != 0 {
                    guard keepSize, mode & LinuxConstants.fallocZeroRange == 0 else {
                        throw VMFSError(.unsupported, "FALLOC_FL_PUNCH_HOLE needs FALLOC_FL_KEEP_SIZE")
                    }
                    try open.handle.punchHole(offset: start, length: count)
                } else if mode & LinuxConstants.fallocZeroRange != 0 {
                    let size = open.handle.size
                    if start < size { try open.handle.punchHole(offset: start, length: min(count, size - start)) }
                    try open.handle.allocate(offset: start, length: count, keepSize: keepSize)
                } else {
                    try open.handle.allocate(offset: start, length: count, keepSize: keepSize)
                }
            }
            open.dirty.store(true, ordering: .releasing)
            request.reply(error: 0)
        }
    }
}
