import Foundation
import Testing
import VMFSTestSupport

/// The virtual switch every host of a network test has: `vSwitch0` with the uplink the lab gives
/// it, and port groups for each test.
let testNetwork = [
    "[[vswitch]]", "name = \"vSwitch0\"", "uplinks = [\"uplink0\"]",
    "[[portgroup]]", "name = \"VM Network\"", "vswitch = \"vSwitch0\"",
    "[[portgroup]]", "name = \"VLAN 10\"", "vswitch = \"vSwitch0\"", "vlan = 10",
    "[[portgroup]]", "name = \"VLAN 20\"", "vswitch = \"vSwitch0\"", "vlan = 20",
    "[[portgroup]]", "name = \"Open\"", "vswitch = \"vSwitch0\"", "allow_forged_transmits = true",
    "[[portgroup]]", "name = \"Shaped\"", "vswitch = \"vSwitch0\"", "average_bps = 10000000", "peak_bps = 10000000", "burst_bytes = 32768",
]

/// The host side of the network tests (Tools/nettool, built by Tools/scripts/build-nettool.sh).
func nettool() throws -> String {
    let result = try runSystem(repositoryRoot.appendingPathComponent("Tools/scripts/build-nettool.sh").path, [])
    guard result.status == 0 else { throw LabError("build-nettool.sh failed: \(result.output)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The `key=value` fields of a nettool summary line.
func nettoolFields(_ output: String) -> [String: Double] {
    guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("recv ") || $0.hasPrefix("echo ") || $0.hasPrefix("send ") }) else { return [:] }
    var fields: [String: Double] = [:]
    for part in line.split(separator: " ") {
        let pair = part.split(separator: "=", maxSplits: 1)
        if pair.count == 2, let value = Double(pair[1]) { fields[String(pair[0])] = value }
    }
    return fields
}

extension TestCluster {
    /// The address of guest `n` on the lab's network (.100 + n).
    func guestIP(_ n: Int) -> String { "\(lab.prefix).\(100 + n)" }
    func guestIPNumber(_ n: Int) -> UInt64 { lab.guestAddress(100 + n) }

    /// Creates a test-guest VM with one NIC on `portGroup` through `host`, and powers it on.
    func startGuest(on host: AgentHost, name: String, portGroup: String, workload: String, arguments: [UInt64]) throws {
        let created = try host.vmctl(["create", "--datastore", "ds1", "--name", name, "--guest", try testGuestImage(), "--workload", workload,
                                      "--args", arguments.map(String.init).joined(separator: ","), "--memory", "64M", "--network", portGroup])
        guard created.status == 0 else { throw LabError("create \(name): \(created.output)") }
        let on = try host.vmctl(["power-on", name])
        guard on.status == 0 else { throw LabError("power-on \(name): \(on.output)") }
    }

    /// Waits until VM `name` on `host` says its NIC is up (marker 0x40).
    func waitForNIC(_ host: AgentHost, _ name: String, seconds: Double = 30) -> Bool {
        eventually(seconds: seconds) { networkReadyTime(host, name) != nil }
    }

    /// Runs busybox ping from machine `machine` (3 echoes, up to 10 s for the first answer on a
    /// loaded machine); its output says `bytes from` for each echo that came back.
    func ping(from machine: Int, _ address: String) throws -> ToolResult {
        try lab.run(in: machine, ["/usr/bin/busybox", "ping", "-c", "3", "-W", "10", address])
    }
}

/// CLOCK_MONOTONIC time at which the guest of VM `name` reported its NIC up (marker 0x40).
func networkReadyTime(_ host: AgentHost, _ name: String) -> UInt64? {
    guard let result = try? host.local("GET", "/v1/vms/\(name)"), let object = json(result) as? [String: Any],
          let markers = object["markers"] as? [[String: Any]] else { return nil }
    return markers.first { ($0["code"] as? NSNumber)?.intValue == 0x40 }.flatMap { ($0["monotonicNanoseconds"] as? NSNumber)?.uint64Value }
}

/// The console of VM `name` on `host`.
func consoleText(_ host: AgentHost, _ name: String) -> String {
    (try? host.local("GET", "/v1/vms/\(name)/console").stdout) ?? ""
}

/// The JSON of VM `name`'s NICs on `host`.
func nicCounters(_ host: AgentHost, _ name: String) -> [[String: Any]] {
    guard let result = try? host.local("GET", "/v1/vms/\(name)/nics") else { return [] }
    return json(result) as? [[String: Any]] ?? []
}

/// A counter of the first NIC: `side` is "vmm" or "host".
func nicCounter(_ host: AgentHost, _ name: String, _ side: String, _ key: String) -> Int {
    ((nicCounters(host, name).first?[side] as? [String: Any])?[key] as? NSNumber)?.intValue ?? -1
}
