import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

/// An HA cluster for the tests: `hosts` agents in network namespaces around one volume, all
/// members of cluster "lab", and protected `diskSequence` VMs whose disks prove they never ran twice.
final class HALab: @unchecked Sendable {
    let cluster: TestCluster
    var hosts: [AgentHost] { cluster.hosts }
    var members: [String] { hosts.map(\.name) }
    /// VM name → the boots its disk showed last (each HA restart adds one).
    private(set) var expectedBoots: [String: UInt64] = [:]

    /// - Parameters:
    ///   - capacityMiB: memory each member offers HA (`[ha] memory_capacity_mib`); nil: its RAM less 1 GiB.
    init(hosts count: Int = 3, capacityMiB: Int? = nil, failuresToTolerate: Int = 0, monitoringTimeout: Int = 30,
         maxResetsPerHour: Int = 3, heartbeatMs: Int = 250, deadMs: Int = 2000, ioTimeoutMs: Int = 300) throws {
        var extra = ["orphan_timeout_ms = 5000"]
        if let capacityMiB { extra += ["[ha]", "memory_capacity_mib = \(capacityMiB)"] }
        cluster = try TestCluster(hosts: count, extraHost: extra, heartbeatMs: heartbeatMs, deadMs: deadMs, ioTimeoutMs: ioTimeoutMs)
        try cluster.startAll()
        let configured = try hosts[0].vmctl(["ha", "configure", "--cluster", "lab"] + members.flatMap { ["--member", $0] }
                                            + ["--failures-to-tolerate", "\(failuresToTolerate)", "--monitoring-timeout", "\(monitoringTimeout)",
                                               "--max-resets-per-hour", "\(maxResetsPerHour)"])
        guard configured.status == 0 else { throw LabError("vmctl ha configure failed: \(configured.output)") }
        // Every member reads the configuration and publishes its status within a second or two.
        guard eventually(seconds: 20, { hosts.allSatisfy { host in
            (haStatus(host)?["members"] as? [[String: Any]])?.allSatisfy { $0["capacityMemoryBytes"] != nil } ?? false
        } }) else { throw LabError("the members did not publish their HA status") }
    }

    /// Creates a protected VM on `host` and powers it on; `workload` defaults to a disk-sequence writer.
    @discardableResult
    func createVM(_ name: String, on host: AgentHost, priority: String = "medium", memory: String = "64M",
                  workload: [String] = ["--workload", "diskSequence", "--args", "1024,1,0,100000"], monitoring: Bool = false,
                  powerOn: Bool = true) throws -> ToolResult {
        let created = try host.vmctl(["create", "--datastore", "ds1", "--name", name, "--guest", try testGuestImage(),
                                      "--disk", "64M", "--memory", memory] + workload)
        guard created.status == 0 else { throw LabError("create \(name): \(created.output)") }
        let protected = try host.vmctl(["ha", "protect", "--priority", priority] + (monitoring ? ["--monitoring"] : []) + [name])
        guard protected.status == 0 else { throw LabError("protect \(name): \(protected.output)") }
        guard powerOn else { return protected }
        let on = try host.vmctl(["power-on", name])
        if on.status == 0 { expectedBoots[name, default: 0] += 1 }
        return on
    }

    /// The HA status as `host` reports it.
    func haStatus(_ host: AgentHost) -> [String: Any]? {
        guard let result = try? host.local("GET", "/v1/ha") else { return nil }
        return json(result) as? [String: Any]
    }

    /// For each VM name: the hosts whose agent says it runs there (a VM not registered on a host
    /// does not run there).
    func placements(_ names: [String], among candidates: [AgentHost]? = nil) -> [String: [String]] {
        var result: [String: [String]] = [:]
        for name in names {
            result[name] = (candidates ?? hosts).filter { $0.pid != nil && powerState($0, name) == "running" }.map(\.name)
        }
        return result
    }

    /// True when every VM in `names` runs on exactly one host.
    func allRunningOnce(_ names: [String], among candidates: [AgentHost]? = nil) -> Bool {
        placements(names, among: candidates).values.allSatisfy { $0.count == 1 }
    }

    /// The live VMM processes of every host (from their runtime records).
    func liveVMMs() -> [Int32] { hosts.flatMap(\.vmmPIDs).filter { isRunning($0) && Self.isVMM($0) } }

    static func isVMM(_ pid: Int32) -> Bool {
        guard let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
        return command.split(separator: "\0").first?.hasSuffix("vmx") ?? false
    }

    /// `kill -9` of a host: its agent and every VMM it started.
    func crash(_ host: AgentHost) {
        let vmms = host.vmmPIDs.filter { isRunning($0) && Self.isVMM($0) }
        if let pid = host.pid { kill(pid, SIGKILL) }
        for vmm in vmms { kill(vmm, SIGKILL) }
        host.kill(signal: SIGKILL)
    }

    /// The host a VM's disk can be read through: the one among `candidates` (default: all hosts)
    /// running it (its disk is locked exclusively there), else `fallback`. Pass the live hosts
    /// while one is frozen: asking a stopped agent waits for the request's timeout.
    func reader(of name: String, fallback: AgentHost, among candidates: [AgentHost]? = nil) -> AgentHost {
        (candidates ?? hosts).first { $0.pid != nil && powerState($0, name) == "running" } ?? fallback
    }

    /// The disk logs of `names`, each read through the host running it (or `host`); each must be
    /// consistent and show the boots expected (one per power-on, one per HA restart). Returns the
    /// problems found.
    func checkDisks(_ names: [String], through host: AgentHost) throws -> [String] {
        var problems: [String] = []
        for name in names {
            let through = reader(of: name, fallback: host)
            guard let log = try sequenceLog(through, file: "\(name)-flat.vmdk") else {
                let answer = try through.local("GET", "/v1/volumes/ds1/files/\(name)-flat.vmdk?offset=0&length=512")
                problems.append("\(name): its disk could not be read through \(through.name): \(answer.stdout.prefix(300))")
                continue
            }
            problems += log.problems.map { "\(name): \($0)" }
            if let expected = expectedBoots[name], log.boots != expected {
                problems.append("\(name): \(log.boots) boots on disk, \(expected) expected")
            }
        }
        return problems
    }

    /// Notes that HA restarted these VMs once more.
    func restarted(_ names: [String]) { for name in names { expectedBoots[name, default: 0] += 1 } }

    /// The highest sequence number on each VM's disk (read through the host running it).
    func sequences(_ names: [String], through host: AgentHost, among candidates: [AgentHost]? = nil) throws -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for name in names {
            let reader = reader(of: name, fallback: host, among: candidates)
            result[name] = try sequenceLog(reader, file: "\(name)-flat.vmdk")?.lastSequence ?? 0
        }
        return result
    }

    /// Events of `kind` in `host`'s event log.
    func events(_ kind: String, on host: AgentHost) -> [[String: Any]] {
        guard let result = try? host.local("GET", "/v1/events?limit=10000") else { return [] }
        return result.stdout.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }.filter { $0["kind"] as? String == kind }
    }
}
