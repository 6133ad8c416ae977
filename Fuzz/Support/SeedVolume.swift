@testable public import VMFSCore
#if canImport(Glibc)
import Glibc
#endif

/// The small volume every image fuzzer starts from: a 160 MiB volume with one file of each
/// shape (inline, direct blocks with a hole, single- and double-indirect maps, preallocated,
/// empty, a huge size without blocks) and a host that crashed while it had files open, so its
/// heartbeat slot is live, its locks are held and its journal holds committed transactions.
///
/// Built once per process, deterministically but for the volume UUID, which is derived from the
/// process ID: a mount takes a lock file named after volume and host (`/run/vmfs`), and fuzzers
/// running side by side (CI, a long run, `-jobs`) must never share one. Edits name fields, not
/// bytes, so an input reproduces in any process.
public struct SeedVolume: Sendable {
    /// Heartbeat timing of the seed's hosts and of the fuzzers' mounts: renew every 250 ms, dead
    /// after 6 s. Inputs never wait a dead interval (recovery is forced), and a fuzzer at
    /// `nice 10` on a busy machine must not fence itself (it would after D − T = 4.5 s unrenewed).
    public static let timing = HeartbeatTiming(renewIntervalMs: 250, deadIntervalMs: 6000, ioTimeoutMs: 1500)

    /// True when `error` says the host gave up for reasons outside the input: the watchdog
    /// interrupted it, or it fenced itself because its heartbeat thread was starved.
    public static func isDisturbance(_ error: VMFSError) -> Bool { error.code == .interrupted || error.code == .fenced }
    public static let size: UInt64 = 160 << 20
    /// The files of the seed, by name.
    public static let fileNames = ["inline.txt", "data.bin", "sparse.vmdk", "thick-flat.vmdk", "renamed", "huge", "journaled.log"]

    public let snapshot: ImageSnapshot
    public let header: VolumeHeader
    /// The heartbeat slot of the host that crashed.
    public let crashedSlot: Int
    /// Journal sectors (of ``crashedSlot``) where committed transactions start, with their record counts.
    public let transactions: [(sector: Int, records: Int)]
    /// For each structure family, the indices whose sectors the seed has written.
    public let written: [Family: [Int]]

    /// The structure families an edit can address.
    public enum Family: Int, CaseIterable, Sendable {
        case heartbeatSlot, lockRecord, nameTable, fileDescriptor, pointerBlock, blockBitmap, pointerBitmap, journalHeader
    }

    /// The seed, built on first use.
    public static let shared: SeedVolume = {
        do { return try SeedVolume() } catch { fatalError("building the seed volume failed: \(error)") }
    }()

    /// Mount options for a host named `name` with the seed's timing, no automatic recovery
    /// (harnesses recover explicitly, without waiting a dead interval) and no lock waits.
    public static func mountOptions(_ name: String, interruption: Interruption) -> MountOptions {
        var options = MountOptions(host: HostIdentity.local(override: name))
        options.timing = timing
        options.lockWaitMs = 0
        options.tableLockWaitMs = 200
        options.commitIntervalMs = 60_000
        options.automaticRecovery = false
        options.directIO = false
        options.interruption = interruption
        return options
    }

    private init() throws {
        let device = MemoryBlockDevice(size: Self.size, path: "seed")
        var format = FormatOptions()
        format.label = "fuzz"
        format.journalSize = 1 << 20
        format.timing = Self.timing
        format.uuid = HostUUID.derived(from: "vmfs-fuzz-seed-\(getpid())")
        try VolumeFormatter.format(device, options: format)

        let maker = try Volume.mount(device: device, options: Self.mountOptions("maker", interruption: Interruption()))
        try Self.makeFiles(on: maker)
        try maker.unmount()

        let crashed = try Volume.mount(device: device, options: Self.mountOptions("crashed", interruption: Interruption()))
        let log = try crashed.create("journaled.log", access: .readWrite)
        try log.write(bytes: Array(repeating: 0x4C, count: 4096), at: 0)
        try crashed.rename("empty", to: "renamed")
        let held = try crashed.open("thick-flat.vmdk", access: .readWrite)
        try held.write(bytes: Array(repeating: 0x54, count: 512), at: 2 << 20)
        try crashed.sync()
        crashedSlot = crashed.membership?.slot ?? 0
        snapshot = try ImageSnapshot(of: device)  // the moment of the crash
        try held.close()
        try log.close()
        try crashed.unmount()

        header = try Volume.readHeader(device)
        let scan = try JournalReplay.scan(device: snapshot.memoryDevice(), layout: header.layout, volumeID: header.volumeID,
                                          slot: crashedSlot)
        transactions = scan.transactions.map { ($0.sector, $0.records.count) }
        written = Self.writtenIndices(snapshot: snapshot, layout: header.layout)
    }

    private static func makeFiles(on volume: Volume) throws {
        let inline = try volume.create("inline.txt", access: .readWrite)
        try inline.write(bytes: Array("a small file kept inside its descriptor\n".utf8), at: 0)
        try inline.close()
        let data = try volume.create("data.bin", access: .readWrite)
        try data.write(bytes: Array(repeating: 0xD1, count: 8192), at: 0)
        try data.write(bytes: Array(repeating: 0xD2, count: 4096), at: 5 << 19)  // block 2; block 1 is a hole
        try data.close()
        let sparse = try volume.create("sparse.vmdk", access: .readWrite)
        try sparse.write(bytes: Array(repeating: 0x51, count: 4096), at: (1 << 30) + 100)  // single indirect
        try sparse.write(bytes: Array(repeating: 0x52, count: 4096), at: 5 << 29)  // double indirect
        try sparse.close()
        let thick = try volume.create("thick-flat.vmdk", access: .readWrite)
        try thick.allocate(offset: 0, length: 3 << 20)
        try thick.write(bytes: Array(repeating: 0x54, count: 4096), at: 1 << 20)
        try thick.close()
        try volume.create("empty")
        let huge = try volume.create("huge", access: .readWrite)
        try huge.truncate(to: 1 << 40)
        try huge.close()
    }

    private static func writtenIndices(snapshot: ImageSnapshot, layout: VolumeLayout) -> [Family: [Int]] {
        func scan(_ start: UInt64, _ count: Int) -> [Int] {
            (0..<count).filter { snapshot.sector(at: start + UInt64($0) * 4096).contains { $0 != 0 } }
        }
        return [
            .heartbeatSlot: scan(layout.heartbeatOffset, Int(layout.maxHosts)),
            .lockRecord: scan(layout.lockOffset, Int(layout.lockCount)),
            .nameTable: scan(layout.nameTableOffset, FormatConstants.nameTableSectors),
            .fileDescriptor: scan(layout.descriptorOffset, FormatConstants.maxFiles),
            .pointerBlock: scan(layout.pointerNodeOffset, Int(layout.pointerNodeCount)),
            .blockBitmap: scan(layout.blockBitmapOffset, Int(layout.blockClusterCount)),
            .pointerBitmap: scan(layout.pointerBitmapOffset, Int(layout.pointerClusterCount)),
            .journalHeader: (0..<Int(layout.maxHosts)).filter { snapshot.sector(at: layout.journal($0)).contains { $0 != 0 } },
        ]
    }

    /// How many structures of `family` the volume has.
    public func count(of family: Family) -> Int {
        let layout = header.layout
        return switch family {
        case .heartbeatSlot, .journalHeader: Int(layout.maxHosts)
        case .lockRecord: Int(layout.lockCount)
        case .nameTable: FormatConstants.nameTableSectors
        case .fileDescriptor: FormatConstants.maxFiles
        case .pointerBlock: Int(layout.pointerNodeCount)
        case .blockBitmap: Int(layout.blockClusterCount)
        case .pointerBitmap: Int(layout.pointerClusterCount)
        }
    }
}
