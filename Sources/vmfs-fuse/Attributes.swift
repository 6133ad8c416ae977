internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// `struct stat` and `struct statvfs` for the kernel, built from VMFS attributes.
enum Attributes {
    /// Longest name VMFS stores, in bytes of UTF-8.
    static let nameMax = 127

    /// The attributes of a file.
    static func stat(of file: FileStatus, blockSize: UInt32) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = ino_t(file.inode)
        st.st_mode = mode_t(file.mode)
        st.st_nlink = 1
        st.st_uid = uid_t(file.uid)
        st.st_gid = gid_t(file.gid)
        st.st_size = off_t(clamping: file.size)
        // An inline file's bytes live in its descriptor: count them, so that `du` sees them.
        let used = file.isInline ? file.size : file.allocatedBytes
        st.st_blocks = blkcnt_t(clamping: (used / 512) + (used % 512 == 0 ? 0 : 1))
        st.st_blksize = blksize_t(blockSize)
        st.st_atim = timespec(nanoseconds: file.accessTime)
        st.st_mtim = timespec(nanoseconds: file.modificationTime)
        st.st_ctim = timespec(nanoseconds: file.changeTime)
        return st
    }

    /// The answer to a time change of a file that no longer exists (the kernel writing back an
    /// inode whose file was removed): a regular file without links, with the requested times.
    static func vanished(inode: fuse_ino_t, requested: Glibc.stat) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = ino_t(InodeTable.slot(of: inode).map { $0 + 2 } ?? 0)
        st.st_mode = Glibc.S_IFREG
        st.st_nlink = 0
        st.st_atim = requested.st_atim
        st.st_mtim = requested.st_mtim
        st.st_ctim = requested.st_ctim
        return st
    }

    /// The attributes of the root directory, the only directory.
    static func rootStat(_ directory: DirectoryAttributes, blockSize: UInt32) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = ino_t(InodeTable.root)
        st.st_mode = Glibc.S_IFDIR | mode_t(directory.mode & 0o7777)
        st.st_nlink = 2
        st.st_uid = uid_t(directory.uid)
        st.st_gid = gid_t(directory.gid)
        st.st_blksize = blksize_t(blockSize)
        st.st_atim = timespec(nanoseconds: directory.accessTime)
        st.st_mtim = timespec(nanoseconds: directory.modificationTime)
        st.st_ctim = timespec(nanoseconds: directory.changeTime)
        return st
    }

    /// A lookup or create answer for `file` under node id `node`: no entry caching (names change
    /// on any host at any time), attributes cached for `attributeTimeout` seconds.
    static func entry(for file: FileStatus, node: fuse_ino_t, blockSize: UInt32, attributeTimeout: Double) -> fuse_entry_param {
        var entry = fuse_entry_param()
        entry.ino = node
        entry.generation = UInt64(file.generation)
        entry.attr = stat(of: file, blockSize: blockSize)
        entry.attr_timeout = attributeTimeout
        entry.entry_timeout = 0
        return entry
    }

    /// `statfs` for the volume.
    static func statfs(_ statistics: VolumeStatistics, readOnly: Bool) -> statvfs {
        var result = statvfs()
        result.f_bsize = UInt(statistics.blockSize)
        result.f_frsize = UInt(statistics.blockSize)
        result.f_blocks = fsblkcnt_t(statistics.totalBlocks)
        result.f_bfree = fsblkcnt_t(statistics.freeBlocks)
        result.f_bavail = fsblkcnt_t(statistics.freeBlocks)
        result.f_files = fsfilcnt_t(statistics.maxFiles)
        result.f_ffree = fsfilcnt_t(max(0, statistics.maxFiles - statistics.files))
        result.f_favail = result.f_ffree
        result.f_namemax = UInt(nameMax)
        if readOnly { result.f_flag = LinuxConstants.statReadOnly }
        return result
    }
}

extension timespec {
    /// A time given in nanoseconds since the epoch (negative before 1970).
    init(nanoseconds: Int64) {
        var seconds = nanoseconds / 1_000_000_000
        var remainder = nanoseconds % 1_000_000_000
        if remainder < 0 {
            seconds -= 1
            remainder += 1_000_000_000
        }
        self.init(tv_sec: time_t(seconds), tv_nsec: Int(remainder))
    }

    /// Nanoseconds since the epoch, saturated to what an Int64 holds (about the years 1678–2262).
    var nanoseconds: Int64 {
        let (scaled, overflow) = Int64(tv_sec).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return tv_sec < 0 ? .min : .max }
        return scaled.addingReportingOverflow(Int64(tv_nsec)).overflow ? .max : scaled + Int64(tv_nsec)
    }
}
