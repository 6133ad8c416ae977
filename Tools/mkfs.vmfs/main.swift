import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// `mkfs.vmfs`: creates a VMFS volume on a block device or an image file.
struct MakeFilesystem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkfs.vmfs",
        abstract: "Create a VMFS volume on a block device or an image file.",
        discussion: """
            Only metadata is written: the header (and its backup in the last sector), and the metadata \
            regions are cleared. The data area is not touched, so even a 64 TiB sparse image formats \
            in about a second. When DEVICE does not exist and --size is given, a sparse image file is \
            created. A device that already carries a filesystem signature (VMFS, ext2/3/4, XFS, btrfs, \
            swap, a partition table) is refused unless --force is given.

            Examples:
              mkfs.vmfs --size 64T --label datastore1 /var/lib/vmfs/lun0.img
              mkfs.vmfs --block-size 8M --max-hosts 128 /dev/loop0
              mkfs.vmfs --atomic-update ats --fencing pr iscsi://10.0.0.5/iqn.2026-11.org.example:lun0/1
            """)

    @Option(help: "Size of the image file to create (e.g. 10G, 64T). Only for image files.")
    var size: String?

    @Option(help: "Volume label (at most 127 bytes).")
    var label: String = ""

    @Option(name: .customLong("block-size"), help: "File block size: 1M, 2M, 4M or 8M.")
    var blockSize: String = "1M"

    @Option(name: .customLong("max-hosts"), help: "Heartbeat slots: how many hosts may mount the volume at once (64–2048).")
    var maxHosts: UInt32 = 64

    @Option(name: .customLong("journal-size"), help: "Journal size per host (1M–1G). Default: 1/1024 of the device, 1–16 MiB.")
    var journalSize: String?

    @Option(name: .customLong("heartbeat-interval"), help: "Heartbeat interval H in milliseconds.")
    var heartbeatInterval: UInt32 = 3000

    @Option(name: .customLong("dead-interval"), help: "A host whose heartbeat has not changed for this many milliseconds is dead (D).")
    var deadInterval: UInt32 = 16000

    @Option(name: .customLong("io-timeout"), help: "Heartbeat and metadata I/O timeout T in milliseconds; a host stops writing D − T after its last renewal.")
    var ioTimeout: UInt32 = 8000

    @Option(name: .customLong("atomic-update"),
            help: "How hosts update lock and heartbeat sectors atomically: ats (SCSI COMPARE AND WRITE), scsi2 (RESERVE/RELEASE), paxos (Disk Paxos on plain reads and writes), ofd (byte-range locks: one machine), or auto (ATS when the LUN executes it, else scsi2; ofd for files and block devices).")
    var atomicUpdate: String = "auto"

    @Option(help: "How dead hosts are fenced at the storage: pr (SPC-3 persistent reservations), none, or auto (pr when the LUN supports it).")
    var fencing: String = "auto"

    @Option(help: ArgumentHelp("Volume UUID (default: random).", visibility: .hidden))
    var uuid: String?

    @Flag(help: "Overwrite an existing filesystem signature.")
    var force = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Argument(help: "Block device, image file, or iSCSI LUN (iscsi://[user[%password]@]host[:port]/target-iqn/lun).")
    var device: String

    struct Result: Encodable {
        var device: String
        var uuid: String
        var label: String
        var sizeBytes: UInt64
        var blockSize: UInt32
        var dataBlocks: UInt64
        var maxHosts: UInt32
        var journalSizeBytes: UInt64
        var dataOffset: UInt64
        var heartbeatIntervalMs: UInt32
        var deadIntervalMs: UInt32
        var ioTimeoutMs: UInt32
        var maxFileSizeBytes: UInt64
        var atomicUpdate: String
        var fencing: String
        var probes: [String]
        var seconds: Double
    }

    func run() throws {
        let started = Date()
        guard let block = parseSize(blockSize), block <= UInt64(UInt32.max) else {
            throw ValidationError("--block-size '\(blockSize)' is not a size")
        }
        var options = FormatOptions()
        options.label = label
        options.blockSize = UInt32(block)
        options.maxHosts = maxHosts
        options.force = force
        options.timing = HeartbeatTiming(renewIntervalMs: heartbeatInterval, deadIntervalMs: deadInterval, ioTimeoutMs: ioTimeout)
        if atomicUpdate != "auto" {
            guard let method = AtomicUpdateMethod(name: atomicUpdate) else {
                throw ValidationError("--atomic-update '\(atomicUpdate)' is not one of auto, ats, scsi2, paxos, ofd")
            }
            options.atomicUpdate = method
        }
        if fencing != "auto" {
            guard let method = FencingMethod(name: fencing) else { throw ValidationError("--fencing '\(fencing)' is not one of auto, pr, none") }
            options.fencing = method
        }
        if let journalSize {
            guard let bytes = parseSize(journalSize) else { throw ValidationError("--journal-size '\(journalSize)' is not a size") }
            options.journalSize = bytes
        }
        if let uuid {
            guard let parsed = HostUUID(uuid) else { throw ValidationError("--uuid '\(uuid)' is not a UUID") }
            options.uuid = parsed
        }
        let createdImage = try prepareImage()
        let target: any BlockDevice
        let header: VolumeHeader
        var probes: [String] = []
        do {
            target = try DeviceOpener.open(device)
            let choice = try VolumeFormatter.chooseCoordination(for: target, options: options)
            probes = choice.notes
            options.atomicUpdate = choice.atomicUpdate
            options.fencing = choice.fencing
            header = try VolumeFormatter.format(target, options: options)
        } catch {
            // Nothing is left behind: an image this run created goes away with the failure.
            if createdImage { unlink(device) }
            throw error
        }
        let result = Result(
            device: DeviceOpener.displayName(device), uuid: header.uuid.description, label: header.label, sizeBytes: target.size,
            blockSize: header.layout.blockSize, dataBlocks: header.layout.totalBlocks, maxHosts: header.layout.maxHosts,
            journalSizeBytes: header.layout.journalSize, dataOffset: header.layout.dataOffset,
            heartbeatIntervalMs: header.heartbeatIntervalMs, deadIntervalMs: header.deadIntervalMs, ioTimeoutMs: header.ioTimeoutMs,
            maxFileSizeBytes: header.layout.maxFileSize, atomicUpdate: header.atomicUpdate.name, fencing: header.fencing.name,
            probes: probes, seconds: Date().timeIntervalSince(started))
        if json {
            ToolOutput.json(result)
        } else {
            print("""
                Created VMFS volume \(header.uuid) on \(result.device)
                  label:        \(header.label.isEmpty ? "(none)" : header.label)
                  size:         \(formatSize(target.size)) (\(header.layout.totalBlocks) blocks of \(formatSize(UInt64(header.layout.blockSize))))
                  hosts:        \(header.layout.maxHosts) heartbeat slots, journals of \(formatSize(header.layout.journalSize))
                  heartbeat:    every \(header.heartbeatIntervalMs) ms, dead after \(header.deadIntervalMs) ms, I/O timeout \(header.ioTimeoutMs) ms
                  max file:     \(formatSize(header.layout.maxFileSize)); at most 255 files
                  metadata:     \(formatSize(header.layout.dataOffset)) (written sparsely)
                  locking:      \(header.atomicUpdate) [\(header.atomicUpdate.name)]
                  fencing:      \(header.fencing) [\(header.fencing.name)]
                  took:         \(String(format: "%.3f", result.seconds)) s
                """)
            for probe in probes { print("  probe:        \(probe)") }
        }
    }

    /// Creates or sizes the image file when --size is given; returns true when it created one.
    private func prepareImage() throws -> Bool {
        if ISCSIAddress.isISCSI(device) {
            if size != nil { throw ValidationError("--size is only for image files; \(DeviceOpener.displayName(device)) is an iSCSI LUN") }
            return false
        }
        var info = stat()
        let exists = stat(device, &info) == 0
        guard let size else {
            if !exists { throw ValidationError("\(device) does not exist; give --size to create an image file") }
            return false
        }
        guard let bytes = parseSize(size), bytes > 0 else { throw ValidationError("--size '\(size)' is not a size") }
        guard bytes <= Self.largestImage else {
            throw ValidationError("--size \(size) is \(bytes) bytes; the largest image file is \(Self.largestImage) bytes "
                                  + "(8 EiB − 1, the largest file offset Linux has)")
        }
        if exists {
            guard info.st_mode & S_IFMT == S_IFREG else {
                throw ValidationError("--size is only for image files; \(device) is a device")
            }
            if UInt64(info.st_size) == bytes { return false }
            guard info.st_size == 0 || force else {
                throw ValidationError("\(device) exists with \(info.st_size) bytes; use --force to resize it to \(bytes)")
            }
            guard truncate(device, off_t(bytes)) == 0 else { throw ValidationError("cannot resize \(device): \(String(cString: strerror(errno)))") }
            return false
        }
        let fd = open(device, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot create \(device): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            var reason = String(cString: strerror(errno))
            if errno == EFBIG {
                reason += " (the filesystem holding the image does not allow files that large: ext4 stops at 16 TiB; "
                    + "use XFS, btrfs or tmpfs for larger images)"
            }
            unlink(device)
            throw ValidationError("cannot size \(device) to \(bytes) bytes: \(reason)")
        }
        return true
    }

    /// The largest size `--size` accepts: the largest `off_t`.
    static let largestImage = UInt64(Int64.max)
}

do {
    var command = try MakeFilesystem.parseAsRoot()
    try command.run()
} catch let error as VMFSError {
    ToolOutput.fail("mkfs.vmfs", error)
} catch {
    MakeFilesystem.exit(withError: error)
}
