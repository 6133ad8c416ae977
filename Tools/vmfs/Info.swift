import ArgumentParser
import VMFSCore
import VMFSToolSupport

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the volume's parameters and usage.")

    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "Block device or image file.") var device: String

    struct Output: Encodable {
        var device: String
        var uuid: String
        var label: String
        var formatVersion: String
        var created: String
        var sizeBytes: UInt64
        var blockSize: UInt32
        var totalBlocks: UInt64
        var freeBlocks: UInt64
        var files: Int
        var maxFiles: Int
        var maxHosts: UInt32
        var journalSizeBytes: UInt64
        var heartbeatIntervalMs: UInt32
        var deadIntervalMs: UInt32
        var ioTimeoutMs: UInt32
        var maxFileSizeBytes: UInt64
        var directIO: Bool
        var hostsInUse: Int
        var coordination: CoordinationInfo
    }

    func run() throws {
        do {
            let inspector = try VolumeInspector(path: device)
            let header = inspector.header
            let stats = try inspector.statistics()
            let hosts = try inspector.hosts(observeMilliseconds: 0).filter { $0.state != "free" }
            let coordination = inspector.coordination()
            let output = Output(
                device: DeviceOpener.displayName(device), uuid: header.uuid.description, label: header.label,
                formatVersion: "\(header.formatMajor).\(header.formatMinor)", created: ToolOutput.time(header.creationTime),
                sizeBytes: header.layout.deviceSize, blockSize: header.layout.blockSize, totalBlocks: stats.totalBlocks,
                freeBlocks: stats.freeBlocks, files: stats.files, maxFiles: stats.maxFiles, maxHosts: header.layout.maxHosts,
                journalSizeBytes: header.layout.journalSize, heartbeatIntervalMs: header.heartbeatIntervalMs,
                deadIntervalMs: header.deadIntervalMs, ioTimeoutMs: header.ioTimeoutMs, maxFileSizeBytes: header.layout.maxFileSize,
                directIO: inspector.device.usesDirectIO, hostsInUse: hosts.count, coordination: coordination)
            if json { ToolOutput.json(output); return }
            let used = (stats.totalBlocks - 1 - min(stats.freeBlocks, stats.totalBlocks - 1)) * UInt64(stats.blockSize)
            print("""
                Volume \(header.uuid) on \(output.device)
                  label:      \(header.label.isEmpty ? "(none)" : header.label.escapingControlCharacters)
                  format:     \(output.formatVersion), created \(output.created)
                  size:       \(formatSize(header.layout.deviceSize)), \(stats.totalBlocks) blocks of \(formatSize(UInt64(stats.blockSize)))
                  used:       \(formatSize(used)), free \(formatSize(stats.freeBlocks * UInt64(stats.blockSize)))
                  files:      \(stats.files) of \(stats.maxFiles)
                  hosts:      \(hosts.count) of \(header.layout.maxHosts) heartbeat slots in use
                  heartbeat:  every \(header.heartbeatIntervalMs) ms, dead after \(header.deadIntervalMs) ms, I/O timeout \(header.ioTimeoutMs) ms
                  max file:   \(formatSize(header.layout.maxFileSize))
                  locking:    \(coordination.atomicUpdateDescription) [\(coordination.atomicUpdate)]
                  fencing:    \(coordination.fencingDescription) [\(coordination.fencing)]
                """)
            if let target = coordination.target { print("  target:     \(target)") }
            if let reservation = coordination.reservation { print("  reserved:   \(reservation)") }
            if let keys = coordination.registeredKeys {
                print("  registered: \(keys.isEmpty ? "no keys" : keys.joined(separator: ", "))")
            }
            if !stats.damagedBitmaps.isEmpty {
                ToolOutput.error("vmfs info: warning: damaged allocation bitmaps counted as full: "
                                 + "\(stats.damagedBitmaps.joined(separator: ", ")) (run fsck.vmfs)")
            }
        } catch {
            throw ToolOutput.failure("vmfs info", error)
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the files on the volume.")

    @Flag(name: .shortAndLong, help: "Long listing: mode, owner, size, allocation, time.") var long = false
    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "Block device or image file.") var device: String

    struct Entry: Encodable {
        var name: String
        var size: UInt64
        var allocatedBytes: UInt64
        var mode: String
        var uid: UInt32
        var gid: UInt32
        var modified: String
        var slot: Int
        var generation: UInt32
    }

    func run() throws {
        do {
            let files = try VolumeInspector(path: device).files()
            if json {
                ToolOutput.json(files.map {
                    Entry(name: $0.name, size: $0.size, allocatedBytes: $0.allocatedBytes, mode: String($0.mode & 0o7777, radix: 8),
                          uid: $0.uid, gid: $0.gid, modified: ToolOutput.time($0.modificationTime), slot: $0.slot, generation: $0.generation)
                })
                return
            }
            guard long else {
                for file in files { print(file.name.escapingControlCharacters) }
                return
            }
            var table = TextTable(header: ["MODE", "UID", "GID", "SIZE", "ALLOCATED", "MODIFIED", "NAME"])
            for file in files {
                table.add([String(file.mode & 0o7777, radix: 8), "\(file.uid)", "\(file.gid)", "\(file.size)",
                           formatSize(file.allocatedBytes), ToolOutput.time(file.modificationTime), file.name.escapingControlCharacters])
            }
            print(table.render())
        } catch {
            throw ToolOutput.failure("vmfs ls", error)
        }
    }
}
