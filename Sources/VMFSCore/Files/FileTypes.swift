/// What a file looks like: its name, identity and attributes.
public struct FileStatus: Sendable, Equatable {
    public var name: String
    /// Descriptor slot (0...254).
    public var slot: Int
    /// Descriptor generation: changes each time the slot is reused.
    public var generation: UInt32
    public var size: UInt64
    /// Bytes of data blocks and pointer blocks the file occupies.
    public var allocatedBytes: UInt64
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var accessTime: Int64
    public var modificationTime: Int64
    public var changeTime: Int64
    public var birthTime: Int64
    /// True when the data lives inside the descriptor.
    public var isInline: Bool

    /// The inode number presented through FUSE (the root directory is 1).
    public var inode: UInt64 { UInt64(slot) + 2 }

    init(name: String, descriptor d: FileDescriptorRecord, blockSize: UInt32) {
        self.name = name
        slot = d.slot
        generation = d.generation
        size = d.size
        allocatedBytes = d.allocatedBlocks.saturatingMultiply(UInt64(blockSize))
            .saturatingAdd(d.pointerBlocks.saturatingMultiply(UInt64(FormatConstants.sectorSize)))
        mode = d.mode
        uid = d.uid
        gid = d.gid
        accessTime = d.accessTime
        modificationTime = d.modificationTime
        changeTime = d.changeTime
        birthTime = d.birthTime
        isInline = d.isInline
    }
}

/// How a file is opened, and which on-disk lock that takes.
/// Who on this host a handle belongs to. On-disk locks are per host; inside a host, a file open
/// for writing by one client cannot be opened for writing by another (each VM is a client, a FUSE
/// mount is one, each command is one), so two VMs on one host never write one disk.
public struct FileClient: Hashable, Sendable, CustomStringConvertible {
    /// The client's name, shown in busy errors (for example `VM 'web01'`).
    public let name: String

    public init(_ name: String) { self.name = name }

    /// Handles opened without naming a client: they share with each other as before clients existed.
    public static let local = FileClient("")

    public var description: String { name.isEmpty ? "another user" : name }
}

public enum FileAccess: Sendable, Equatable, CustomStringConvertible {
    /// Shared read-only lock: up to 32 hosts at once.
    case readOnly
    /// Exclusive lock for the life of the handle: other hosts get `EBUSY`.
    case readWrite
    /// Multi-writer lock: several hosts write, but only within already allocated blocks.
    case multiWriter

    var lockMode: LockRecord.Mode {
        switch self {
        case .readOnly: .readOnly
        case .readWrite: .exclusive
        case .multiWriter: .multiWriter
        }
    }

    public var description: String {
        switch self {
        case .readOnly: "read-only"
        case .readWrite: "read-write"
        case .multiWriter: "multi-writer"
        }
    }
}

/// What a rename does when the target name exists.
public enum RenameMode: Sendable {
    /// Replace the target atomically (`rename(2)`).
    case replace
    /// Fail with `EEXIST` (`RENAME_NOREPLACE`).
    case noReplace
    /// Swap the two names atomically (`RENAME_EXCHANGE`).
    case exchange
}

/// Attribute changes for ``Volume/setAttributes(of:_:)``; `nil` fields stay as they are.
public struct AttributeChanges: Sendable, Equatable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var accessTime: Int64?
    public var modificationTime: Int64?
    public var size: UInt64?

    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, accessTime: Int64? = nil,
                modificationTime: Int64? = nil, size: UInt64? = nil) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.accessTime = accessTime
        self.modificationTime = modificationTime
        self.size = size
    }
}

/// Ownership and permissions of a new file.
public struct CreateAttributes: Sendable, Equatable {
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32

    public init(mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
    }
}

/// Space and file counts (`statfs`).
public struct VolumeStatistics: Sendable, Equatable {
    public var blockSize: UInt32
    public var totalBlocks: UInt64
    /// Free data blocks: never more than the volume's usable blocks (``totalBlocks`` − 1).
    public var freeBlocks: UInt64
    public var maxFiles: Int
    public var files: Int
    public var freePointerBlocks: UInt64
    /// Allocation bitmaps whose free count could not be believed (counted as full; run fsck.vmfs).
    public var damagedBitmaps: [String] = []
}

/// Options for mounting a volume.
public struct MountOptions: Sendable {
    /// Who this host is.
    public var host: HostIdentity
    /// Mount without write access: only read-only file locks are taken.
    public var readOnly = false
    /// Heartbeat timing; `nil` uses the volume's (set at mkfs).
    public var timing: HeartbeatTiming?
    /// Interval of the background group commit.
    public var commitIntervalMs: UInt32 = 1000
    /// How long opening a file waits for another host's lock before failing with `EBUSY` (0: not at all).
    public var lockWaitMs: UInt32 = 0
    /// How long namespace changes wait for the file table lock, which other hosts hold briefly.
    public var tableLockWaitMs: UInt32 = 30_000
    /// Recover dead hosts automatically.
    public var automaticRecovery = true
    /// Use `O_DIRECT` where the device supports it.
    public var directIO = true
    /// When this host's previous incarnation (a crashed or restarted process with the same
    /// identity) is reclaimed at mount, keep its file locks for this membership instead of
    /// releasing them: a restarted host agent whose VMs kept running adopts their files without
    /// a moment at which another host could take them. Call ``Volume/finishAdoption()`` once
    /// the files still in use are open again; it releases the rest.
    public var adoptFileLocks = false
    /// Written into this host's local lock file for the volume while it is mounted: a host agent
    /// puts its API socket and datastore name there (``Volume/localHolderNote(device:host:)``).
    public var holderNote: String?
    /// Stops this mount's long waits (joining, locks, recovery) when requested: the process's
    /// by default, which tools connect to SIGINT and SIGTERM.
    public var interruption: Interruption = .process

    public init(host: HostIdentity = .local()) { self.host = host }
}
