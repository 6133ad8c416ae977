import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

let hasKVM = access("/dev/kvm", R_OK | W_OK) == 0
let canRunCluster = hasKVM && NetworkLab.isAvailable
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The test guest image (built by Tools/scripts/build-guest.sh).
func testGuestImage() throws -> String {
    let result = try runSystem(repositoryRoot.appendingPathComponent("Tools/scripts/build-guest.sh").path, ["--test-guest-only"])
    guard result.status == 0 else { throw LabError("build-guest.sh failed: \(result.stderr)") }
    return repositoryRoot.appendingPathComponent(".cache/guest/testguest.elf").path
}

/// Hosts in network namespaces around shared volume images, plus client machines.
final class TestCluster: @unchecked Sendable {
    let lab: NetworkLab
    let directory: URL
    let images: [String: String]
    var hosts: [AgentHost] = []

    /// `hostCount` agents (machines 1…hostCount) and `clients` more machines after them.
    /// `heartbeatMs`/`deadMs` are the volumes' heartbeat and dead intervals (T and D). With
    /// `network`, every host gets an uplink veth into the lab's bridge and these
    /// `[[vswitch]]`/`[[portgroup]]` tables in its hostd.toml.
    init(hosts hostCount: Int, clients: Int = 1, volumes: [String] = ["ds1"], extraHost: [String] = [],
         volumeSize: String = "8G", heartbeatMs: Int = 100, deadMs: Int = 800, ioTimeoutMs: Int = 300, network: [String] = []) throws {
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cluster-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var images: [String: String] = [:]
        for volume in volumes {
            let image = directory.appendingPathComponent("\(volume).img").path
            let made = try runTool("mkfs.vmfs", ["--size", volumeSize, "--label", volume, "--heartbeat-interval", "\(heartbeatMs)",
                                                 "--dead-interval", "\(deadMs)", "--io-timeout", "\(ioTimeoutMs)", image])
            guard made.status == 0 else { throw LabError("mkfs failed: \(made.output)") }
            let put = try runTool("vmfs", ["put", "--host-id", "uploader", image, try testGuestImage(), "guest.elf"])
            guard put.status == 0 else { throw LabError("vmfs put failed: \(put.output)") }
            images[volume] = image
        }
        self.images = images
        lab = try NetworkLab(namespaces: hostCount + clients)
        for index in 1...hostCount {
            if !network.isEmpty { try lab.addUplink(index) }
            hosts.append(try AgentHost(name: "esx\(index)-\(lab.id)", index: index, lab: lab, base: directory,
                                       volumes: volumes.compactMap { name in images[name].map { (name, $0) } }, extraHost: extraHost,
                                       extraTables: network))
        }
    }

    func startAll() throws { for host in hosts { try host.start() } }

    /// The machine number of client `n` (1-based).
    func client(_ n: Int = 1) -> Int { hosts.count + n }

    deinit {
        for host in hosts { host.kill(signal: SIGKILL) }
        // VMMs run in sessions of their own: stop every one started under this cluster's directory.
        _ = try? runSystem("/usr/bin/pkill", ["-9", "-f", directory.path])
        lab.tearDown()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Polls `condition` every 20 ms for up to `seconds`.
func eventually(seconds: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// The decoded JSON of a curl result.
func json(_ result: ToolResult) -> Any? { try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) }

/// The power state of VM `vm` on `host` ("" when unknown).
func powerState(_ host: AgentHost, _ vm: String) -> String {
    guard let result = try? host.local("GET", "/v1/vms/\(vm)"), let object = json(result) as? [String: Any],
          let summary = object["summary"] as? [String: Any] else { return "" }
    return summary["powerState"] as? String ?? ""
}

/// The sequence log of the test guest on `file`, read through `host`'s agent.
func sequenceLog(_ host: AgentHost, datastore: String = "ds1", file: String) throws -> SequenceLog? {
    let output = NSTemporaryDirectory() + "seq-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: output) }
    let result = try curl(["-s", "-f", "-o", output, "--unix-socket", host.socketPath,
                           "http://agent/v1/volumes/\(datastore)/files/\(file)?offset=0&length=\(1025 * 512)"])
    guard result.status == 0, let data = FileManager.default.contents(atPath: output), data.count == 1025 * 512 else { return nil }
    return SequenceLog(disk: [UInt8](data))
}

/// True while `pid` runs (a zombie, exited but not yet reaped by init, does not count).
func isRunning(_ pid: Int32) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return false }
    let state = text[text.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}
