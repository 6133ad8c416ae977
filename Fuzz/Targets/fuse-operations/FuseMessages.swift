/// FUSE protocol messages as the kernel sends them (`<linux/fuse.h>`, protocol 7.31), built
/// byte by byte: the fuzzer plays a correct kernel that passes extreme values.
enum FuseOpcode: UInt32, CaseIterable {
    case lookup = 1, forget = 2, getattr = 3, setattr = 4, readlink = 5, symlink = 6, mknod = 8, mkdir = 9, unlink = 10,
         rmdir = 11, rename = 12, link = 13, open = 14, read = 15, write = 16, statfs = 17, release = 18, fsync = 20,
         getxattr = 22, flush = 25, initialize = 26, opendir = 27, readdir = 28, releasedir = 29, fsyncdir = 30,
         access = 34, create = 35, interrupt = 36, batchForget = 42, fallocate = 43, readdirplus = 44, rename2 = 45,
         lseek = 46, copyFileRange = 47
}

/// A little-endian byte builder for request arguments.
struct MessageWriter {
    private(set) var bytes: [UInt8] = []

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<MemoryLayout<T>.size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    /// A NUL-terminated name.
    mutating func name(_ raw: [UInt8]) { bytes += raw.filter { $0 != 0 } + [0] }

    mutating func append(_ raw: [UInt8]) { bytes += raw }
}

enum FuseMessage {
    /// `struct fuse_in_header` followed by `arguments`.
    static func request(_ opcode: FuseOpcode, unique: UInt64, node: UInt64, arguments: [UInt8],
                        uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 1) -> [UInt8] {
        var header = MessageWriter()
        header.put(UInt32(40 + arguments.count))
        header.put(opcode.rawValue)
        header.put(unique)
        header.put(node)
        header.put(uid)
        header.put(gid)
        header.put(pid)
        header.put(UInt32(0))  // total_extlen, padding
        return header.bytes + arguments
    }

    /// `struct fuse_init_in` of protocol 7.36 (with flags2).
    static func initialize(flags: UInt32) -> [UInt8] {
        var w = MessageWriter()
        w.put(UInt32(7))
        w.put(UInt32(36))
        w.put(UInt32(128 << 10))
        w.put(flags)
        w.put(UInt32(0))  // flags2
        w.append([UInt8](repeating: 0, count: 44))
        return w.bytes
    }

    /// Kernel INIT flags the fuzzer may offer (FUSE_ASYNC_READ, POSIX_LOCKS, ATOMIC_O_TRUNC,
    /// BIG_WRITES, SPLICE_*, AUTO_INVAL_DATA, READDIRPLUS, ASYNC_DIO, WRITEBACK_CACHE, PARALLEL_DIROPS, MAX_PAGES).
    static let offeredFlags: UInt32 = 1 | 2 | 8 | 32 | 128 | 256 | 512 | 4096 | 8192 | 32768 | 65536 | 262144 | 4_194_304
}
