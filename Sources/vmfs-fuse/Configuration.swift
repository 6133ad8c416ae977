internal import VMFSCore

/// Everything the command line decides: what to mount where, as which host, and how.
struct Configuration: Sendable, Equatable {
    /// The image file or block device holding the volume (absolute path).
    var device: String
    /// The directory to mount on (absolute path).
    var mountpoint: String
    /// Stay in the foreground instead of detaching after the mount succeeded.
    var foreground = false
    /// libfuse debug output (implies `foreground`).
    var debug = false
    /// Serve requests on one thread (`-s`).
    var singleThreaded = false
    /// Mount read-only: only shared file locks are taken and nothing is written but the heartbeat.
    var readOnly = false
    /// Host identity override (`-o host_id=` / `--host-id`); default `/etc/machine-id`.
    var hostID: String?
    /// Heartbeat timing override (tests): renew, dead and I/O timeout in milliseconds.
    var heartbeatMs: UInt32?
    var deadMs: UInt32?
    var ioTimeoutMs: UInt32?
    /// How long an open waits for another host's lock before failing with `EBUSY`. It covers
    /// the kernel's asynchronous RELEASE: `close(2)` returns before the other host's daemon
    /// has dropped the lock.
    var lockWaitMs: UInt32 = 1000
    /// Attribute cache timeout (seconds) for files this host has open (and so holds the lock
    /// of); every other attribute and every name is revalidated on each use.
    var lockedAttributeTimeout: Double = 1.0
    /// Largest READ and WRITE request (bytes).
    var maxTransfer: UInt32 = 1 << 20
    /// Kernel readahead for the mount in KiB (written to the FUSE connection's bdi); 0 leaves
    /// the kernel default.
    var readAheadKiB: UInt32 = 1024
    /// Worker threads of the session loop.
    var maxThreads: Int32 = 16
    /// Answer reads by splicing from the device (`splice_read`) instead of copying.
    var spliceReads = false
    /// Let the kernel cache writes (`writeback_cache`, the default; see ``InodeTable`` for how
    /// other hosts' changes stay visible).
    var writebackCache = true
    /// Options handed to libfuse and the kernel (`allow_other`, `auto_unmount`, …).
    var fuseOptions: [String] = []
    /// Internal: the pipe to the waiting parent (set in the detached child).
    var readyDescriptor: Int32?

    /// Mount options for `Volume.mount`.
    var mountOptions: MountOptions {
        var options = MountOptions(host: HostIdentity.local(override: hostID))
        options.readOnly = readOnly
        options.lockWaitMs = lockWaitMs
        if let heartbeatMs, let deadMs, let ioTimeoutMs {
            options.timing = HeartbeatTiming(renewIntervalMs: heartbeatMs, deadIntervalMs: deadMs, ioTimeoutMs: ioTimeoutMs)
        }
        return options
    }
}
