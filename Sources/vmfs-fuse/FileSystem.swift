internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// The filesystem a mount serves: one VMFS volume mounted by this host, presented to the kernel
/// as a single directory of files.
///
/// Every request runs on a libfuse worker thread and answers before it returns; VMFSCore calls
/// block on device I/O and on-disk locks, which is fine on those threads. The operations are
/// split by concern: names and attributes (`FileSystem+Names`, `+Attributes`), file data
/// (`+Files`, `+Data`), the root directory listing (`+Directory`) and refusals (`+Refusals`).
///
/// Caching (see docs/FUSE.md): names are never cached by the kernel (entry timeout 0), so other
/// hosts' creates, removes and renames show at once; a file's attributes are cached only while
/// this host has it open (its lock keeps every other host from changing it) and are
/// invalidated when the last handle closes; a file's page cache survives an open only when this
/// host held the file's lock without a gap since the cache was filled; written data is cached
/// by the kernel (writeback cache) only while this host holds the file's exclusive lock, and a
/// file changed elsewhere gets a fresh kernel inode (``InodeTable``).
final class FileSystem: Sendable {
    let volume: Volume
    let configuration: Configuration
    let blockSize: UInt32
    let inodes: InodeTable
    let slots = SlotTable(slots: InodeTable.slotCount)
    let files = OpenHandleRegistry()
    /// Handles kept for a moment after an OPEN was refused with `ESTALE`.
    let graces = GraceHandles()
    /// The kernel's change-time write-backs after renames and unlinks, answered without storing.
    let writeBacks = ChangeTimeWriteBacks()
    private let janitorStop = Atomic<Bool>(false)
    let directories = HandleTable<DirectorySnapshot>()
    let buffers: BufferPool
    /// Splices READ replies from the device (`-o splice_read`), when enabled and possible.
    let splicer: SpliceReader?
    private let session = Mutex<SessionReference?>(nil)

    /// The `fuse_session` pointer, for notifications (set once the session exists).
    struct SessionReference: @unchecked Sendable {
        let raw: OpaquePointer
    }

    init(volume: Volume, configuration: Configuration) {
        self.volume = volume
        self.configuration = configuration
        blockSize = volume.header.layout.blockSize
        inodes = InodeTable(versioned: configuration.writebackCache)
        buffers = BufferPool(bufferSize: Int(configuration.maxTransfer))
        splicer = configuration.spliceReads
            ? SpliceReader(devicePath: volume.device.path, maxTransfer: Int(configuration.maxTransfer)) : nil
    }

    /// Starts the thread that closes expired grace handles (see ``GraceHandles``).
    func startJanitor() {
        NativeThread.start { [self] in
            while !janitorStop.load(ordering: .acquiring) {
                usleep(250_000)
                closeExpiredGraceHandles()
            }
        }
    }

    /// Records the session so that the filesystem can send invalidations.
    func attach(session raw: OpaquePointer) {
        session.withLock { $0 = SessionReference(raw: raw) }
    }

    /// The root directory's attributes, as the volume records them (mode, owner and times are
    /// shared by every host; the times change with every create, rename and unlink).
    func rootAttributes() throws(VMFSError) -> stat { Attributes.rootStat(try volume.directoryAttributes(), blockSize: blockSize) }

    /// How long the kernel may cache the root's attributes: the kernel drops them itself after
    /// this host's own namespace changes, so only other hosts' changes wait this long.
    static let rootAttributeTimeout = 1.0

    /// How long the kernel may cache the attributes of the file in `slot`: only while this host
    /// has the file open, and so holds its lock (shared or exclusive), can no other host change
    /// them (size, data and attribute changes all need the exclusive lock).
    func attributeTimeout(slot: Int) -> Double {
        slots.counts(slot).handles > 0 ? configuration.lockedAttributeTimeout : 0
    }

    /// A lookup answer for `file`, under the node id the kernel is to use for it now.
    ///
    /// `file` was read before this host's open/close lock of its slot was taken, so an OPEN may
    /// have come in between: then this host holds the file's lock, the instance stays, and the
    /// attributes recorded as the kernel's must be those the file has under that lock, not the
    /// earlier ones (another host may have changed the file between the read and the OPEN; the
    /// kernel would keep the old size for as long as the file stays open here). A file removed
    /// meanwhile, whose slot this host now has open for another file, gets node id 0: no entry
    /// (ENOENT for a lookup; READDIRPLUS shows the name without making an inode).
    func entry(for file: FileStatus) -> fuse_entry_param {
        slots.withOpenCloseLock(file.slot) {
            guard slots.counts(file.slot).handles > 0 else {
                let node = inodes.node(for: file, held: false)
                return Attributes.entry(for: file, node: node, blockSize: blockSize, attributeTimeout: 0)
            }
            guard let current = try? volume.status(slot: file.slot, generation: file.generation) else {
                var none = fuse_entry_param()
                none.attr = Attributes.stat(of: file, blockSize: blockSize)
                return none
            }
            let node = inodes.node(for: current, held: true)
            return Attributes.entry(for: current, node: node, blockSize: blockSize, attributeTimeout: configuration.lockedAttributeTimeout)
        }
    }

    /// The open file behind `info->fh`.
    func openHandle(_ info: UnsafeMutablePointer<fuse_file_info>?) throws(VMFSError) -> OpenHandle {
        guard let info, let open = OpenHandle.borrowed(info.pointee.fh) else {
            throw VMFSError(.invalidArgument, "unknown file handle")
        }
        return open
    }

    /// Drops the kernel's cached attributes of `inode` (not its data).
    ///
    /// Called when this host closes its last handle of a file and so gives up the file's lock:
    /// from then on another host may change the file, and the kernel must ask again. Safe inside a request handler: with a
    /// negative offset the kernel touches no page and waits for no request.
    func invalidateAttributes(of inode: fuse_ino_t) {
        guard let session = session.withLock({ $0 }) else { return }
        let result = fuse_lowlevel_notify_inval_inode(session.raw, inode, -1, 0)
        if result != 0 && result != -ENOENT {
            Log.debug("invalidating attributes of inode \(inode) failed: \(String(cString: strerror(-result)))")
        }
    }

    /// Closes every handle the kernel left open (the mount went away under open files).
    func closeAll() {
        janitorStop.store(true, ordering: .releasing)
        for (slot, kept) in graces.takeAll() {
            slots.closed(slot, writable: kept.writable)
            try? kept.handle.close()
        }
        for open in files.removeAll() {
            slots.closed(open.slot, writable: open.writable)
            do {
                try open.handle.close()
            } catch {
                Log.error("closing file slot \(open.slot) at unmount: \(error.description)")
            }
        }
        _ = directories.removeAll()
    }

    /// The file name in a request, checked to be a name VMFS can hold.
    static func name(_ raw: UnsafePointer<CChar>?) throws(VMFSError) -> String {
        guard let raw else { throw VMFSError(.invalidArgument, "missing name") }
        let length = strlen(raw)
        guard length <= Attributes.nameMax else {
            throw VMFSError(.nameTooLong, "a name is at most \(Attributes.nameMax) bytes; this one has \(length)")
        }
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: length)
        guard let name = String(validating: bytes, as: UTF8.self) else {
            throw VMFSError(.invalidArgument, "file names must be UTF-8")
        }
        return name
    }

    /// Checks that `inode` is the root directory (the parent of every name).
    static func requireRoot(_ inode: fuse_ino_t) throws(VMFSError) {
        guard inode == InodeTable.root else {
            throw VMFSError(.notFound, "inode \(inode) is not a directory: the volume has only the root directory")
        }
    }

    /// The current wall-clock time in nanoseconds.
    static var now: Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return time.nanoseconds
    }
}
