/// Fixed numbers of the on-disk format (see `docs/FORMAT.md`).
public enum FormatConstants {
    /// Size of every metadata sector, and the unit of metadata I/O.
    public static let sectorSize = 4096
    /// The major format version this code writes and reads. A volume with a higher major is refused.
    public static let formatMajor: UInt16 = 1
    /// The minor format version this code writes. Higher minors are readable (compatible additions).
    public static let formatMinor: UInt16 = 3
    /// Maximum number of files a volume holds.
    public static let maxFiles = 255
    /// Longest file name in bytes of UTF-8.
    public static let maxNameLength = 127
    /// Heartbeat slots a volume has at least.
    public static let minimumHosts = 64
    /// Heartbeat slots a volume has at most.
    public static let maximumHosts = 2048
    /// Read-only or multi-writer holders one lock record can list.
    public static let maxLockHolders = 32
    /// Block sizes `mkfs.vmfs` accepts.
    public static let allowedBlockSizes: [UInt32] = [1 << 20, 2 << 20, 4 << 20, 8 << 20]
    /// Largest file size, independent of block size (256 TiB).
    public static let maxFileSize: UInt64 = 1 << 48

    /// The 8-byte signature at offset 0 of the volume header: `VMFS-SW` and a NUL.
    static let volumeMagic: [UInt8] = Array("VMFS-SW".utf8) + [0]

    /// Incompatible feature bit 0: the atomic sector update is not OFD range locks (header byte
    /// 376 says which) or hosts fence through the storage (byte 377). Readers before 1.2 refuse it.
    static let clusterCoordinationFeature: UInt64 = 1

    /// Lock indices of fixed objects; resource clusters follow from ``firstClusterLock``.
    static let tableLockIndex = 0
    static func descriptorLockIndex(slot: Int) -> Int { 1 + slot }
    static let volumeLockIndex = 256
    static let firstClusterLock = 512

    /// Name table: 16 sectors of 16 entries (256 entries, 255 used).
    static let nameTableSectors = 16
    static let nameEntriesPerSector = 16
    static let nameEntrySize = 240
    static let nameEntriesOffset = 64

    /// File descriptor layout.
    static let directPointers = 952
    static let descriptorMapOffset = 272
    static var inlineCapacity: Int { directPointers * 4 }

    /// Pointer nodes hold this many 32-bit entries after a 64-byte header.
    static let pointerEntries = 1008
    static let pointerEntriesOffset = 64

    /// Resource cluster bitmaps start after a 64-byte header; at most 16384 items per cluster.
    static let bitmapOffset = 64
    static let maxItemsPerCluster = 16384

    /// Journal transaction descriptor: entries of 16 bytes from offset 80.
    static let journalEntriesOffset = 80
    static let journalEntrySize = 16
    static var maxRecordsPerTransaction: Int { (sectorSize - journalEntriesOffset) / journalEntrySize }

    /// Bit 31 of a block-map entry: the block is allocated but not yet written ("to be zeroed").
    static let unwrittenFlag: UInt32 = 1 << 31
}

/// The type tag at offset 0 of every metadata sector.
enum SectorMagic: UInt32, Sendable {
    case heartbeat = 0x4C53_4248      // "HBSL"
    case lock = 0x4B43_4F4C           // "LOCK"
    case nameTable = 0x4C42_544E      // "NTBL"
    case descriptor = 0x4353_4446     // "FDSC"
    case pointer = 0x444E_5450        // "PTND"
    case bitmap = 0x5053_4D42         // "BMSP"
    case journalHeader = 0x4852_4E4A  // "JNRH"
    case journalDescriptor = 0x4458_544A // "JTXD"
    case journalCommit = 0x4358_544A  // "JTXC"
    case paxosLeader = 0x444C_5850    // "PXLD"
    case paxosBallot = 0x4C42_5850    // "PXBL"

    /// The structure name used in messages.
    var structureName: String {
        switch self {
        case .heartbeat: "heartbeat slot"
        case .lock: "lock record"
        case .nameTable: "name table sector"
        case .descriptor: "file descriptor"
        case .pointer: "pointer block"
        case .bitmap: "resource cluster bitmap"
        case .journalHeader: "journal header"
        case .journalDescriptor: "journal transaction descriptor"
        case .journalCommit: "journal commit record"
        case .paxosLeader: "Disk Paxos leader"
        case .paxosBallot: "Disk Paxos ballot block"
        }
    }
}
