internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// INIT: what the daemon asks of the kernel for this connection.
extension FileSystem {
    /// Sets request sizes and capabilities.
    ///
    /// - 1 MiB WRITE and READ requests (`max_write`, `max_read`; the mount carries the same
    ///   `max_read`, or libfuse refuses INIT).
    /// - The writeback cache (unless `no_writeback_cache`): the kernel caches writes and sends
    ///   them in batches. Only files this host has open can be written, and opening for writing
    ///   takes the exclusive lock, so the cached data is never stale on another host: the
    ///   kernel writes everything back before FLUSH (close) and RELEASE, and the lock is dropped
    ///   only after that. The catch is per connection: with the writeback cache the kernel keeps
    ///   every regular file's size and times itself, and ``InodeTable`` hands out a new inode
    ///   when another host changed a file this host does not have open.
    /// - No automatic invalidation of cached data by modification time (with it, the kernel asks
    ///   for attributes before every read). The page cache is kept only while this host holds the
    ///   file's lock, and dropped at the first open after a gap (see `openFile`).
    /// - Splice of READ replies when `splice_read` is on.
    /// - Readahead up to `read_ahead_kb` (the daemon also raises the connection's bdi limit).
    func initialize(_ connection: UnsafeMutablePointer<fuse_conn_info>) {
        let capable = connection.pointee.capable
        connection.pointee.max_write = configuration.maxTransfer
        connection.pointee.max_read = configuration.maxTransfer
        connection.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA)
        if configuration.writebackCache {
            if capable & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 {
                connection.pointee.want |= UInt32(FUSE_CAP_WRITEBACK_CACHE)
            } else {
                Log.warning("the kernel offers no writeback cache: writes go to the daemon as they are made")
            }
        }
        var wanted = UInt32(FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_DIO | FUSE_CAP_ATOMIC_O_TRUNC)
        if configuration.spliceReads { wanted |= UInt32(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE) }
        connection.pointee.want |= capable & wanted
        if let splicer {
            let granted = connection.pointee.want & UInt32(FUSE_CAP_SPLICE_WRITE) != 0
            splicer.enabled.store(granted, ordering: .relaxed)
            if !granted { Log.warning("splice_read: the kernel does not accept spliced replies; reads are copied") }
        }
        if configuration.readAheadKiB > 0 {
            connection.pointee.max_readahead = configuration.readAheadKiB * 1024
        }
        connection.pointee.max_background = 64
        connection.pointee.congestion_threshold = 48
        connection.pointee.time_gran = 1
        Log.debug("init: protocol \(connection.pointee.proto_major).\(connection.pointee.proto_minor), "
                  + "capable 0x\(String(capable, radix: 16)), want 0x\(String(connection.pointee.want, radix: 16)), "
                  + "max_write \(connection.pointee.max_write), max_read \(connection.pointee.max_read), "
                  + "max_readahead \(connection.pointee.max_readahead)")
    }
}
