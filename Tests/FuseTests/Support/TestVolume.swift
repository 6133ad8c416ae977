import Foundation
import Testing
import VMFSCore

/// Heartbeat timing of a test volume, in milliseconds.
struct Timing {
    var heartbeat: UInt32
    var dead: UInt32
    var ioTimeout: UInt32

    /// Short enough for quick mounts, long enough that a busy 2-core machine (fio, fsx and
    /// other suites running alongside) never starves a heartbeat into fencing.
    static let relaxed = Timing(heartbeat: 200, dead: 5000, ioTimeout: 1500)
    /// For tests that wait for a killed host to be declared dead.
    static let fast = Timing(heartbeat: 200, dead: 2000, ioTimeout: 600)

    var mkfsFlags: [String] {
        ["--heartbeat-interval", "\(heartbeat)", "--dead-interval", "\(dead)", "--io-timeout", "\(ioTimeout)"]
    }

    /// The daemon's hidden options overriding the volume's timing.
    var daemonFlags: [String] {
        ["--heartbeat-ms", "\(heartbeat)", "--dead-ms", "\(dead)", "--io-timeout-ms", "\(ioTimeout)"]
    }
}

/// A freshly formatted VMFS volume on a sparse image file.
final class TestVolume {
    let scratch: Scratch
    let image: String
    /// Where file data starts on the device (below: header, heartbeats, locks, journals, metadata).
    let dataOffset: UInt64

    /// - Parameter memory: image and mount points on a tmpfs, for tests whose cost is metadata
    ///   commits (each one flushes the device).
    init(_ name: String, size: String = "16G", timing: Timing = .relaxed, memory: Bool = false) throws {
        scratch = Scratch(name, memory: memory)
        image = scratch.file("volume.img")
        let made = try run(Environment.product("mkfs.vmfs"), ["--json", "--size", size, "--journal-size", "4M", image] + timing.mkfsFlags)
        guard made.status == 0 else { throw HarnessError("mkfs.vmfs failed: \(made)") }
        struct Made: Decodable { var dataOffset: UInt64 }
        dataOffset = try JSONDecoder().decode(Made.self, from: Data(made.stdout.utf8)).dataOffset
    }

    /// Mounts the volume as host `hostID` (a foreground daemon, `-o auto_unmount`).
    func mount(_ hostID: String, options: [String] = [], arguments: [String] = []) throws -> FuseMount {
        try FuseMount(device: image, hostID: hostID, scratch: scratch, options: options, arguments: arguments)
    }

    /// Held locks, read by `vmfs locks --json`.
    func locks() throws -> [LockInfo] {
        let result = try run(Environment.product("vmfs"), ["locks", "--json", image])
        guard result.status == 0 else { throw HarnessError("vmfs locks failed: \(result)") }
        return try JSONDecoder().decode([LockInfo].self, from: Data(result.stdout.utf8))
    }

    /// Heartbeat slots ever used, read by `vmfs hosts --json`.
    func hosts() throws -> [HostInfo] {
        let result = try run(Environment.product("vmfs"), ["hosts", "--json", "--observe-ms", "0", image])
        guard result.status == 0 else { throw HarnessError("vmfs hosts failed: \(result)") }
        return try JSONDecoder().decode([HostInfo].self, from: Data(result.stdout.utf8))
    }

    /// Hosts holding a live heartbeat slot.
    func liveHosts() throws -> [String] {
        try hosts().filter { $0.state != "free" }.map(\.hostName).sorted()
    }

    /// `fsck.vmfs -n`: checks without changing anything.
    func check() throws -> CommandResult {
        try run(Environment.product("fsck.vmfs"), ["-n", image])
    }
}

/// A fingerprint of a file's bytes (to show a command wrote nothing). Holes are skipped
/// (`SEEK_DATA`/`SEEK_HOLE`), so a sparse multi-GiB image costs only its data.
func fingerprint(_ path: String) throws -> String {
    let descriptor = try Posix.open(path, O_RDONLY)
    defer { close(descriptor) }
    let size = lseek(descriptor, 0, SEEK_END)
    var hash: UInt64 = 0xcbf29ce484222325
    var position: off_t = 0
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while position < size {
        let data = lseek(descriptor, position, 3 /* SEEK_DATA */)
        if data < 0 { break }
        let hole = lseek(descriptor, data, 4 /* SEEK_HOLE */)
        var offset = data
        while offset < hole {
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, min($0.count, Int(hole - offset)), offset) }
            guard count > 0 else { throw HarnessError("reading \(path) at \(offset) failed") }
            hash = (hash ^ UInt64(offset)) &* 0x100000001b3
            for byte in buffer[0..<count] { hash = (hash ^ UInt64(byte)) &* 0x100000001b3 }
            offset += off_t(count)
        }
        position = hole
    }
    return "\(size):\(String(hash, radix: 16))"
}
