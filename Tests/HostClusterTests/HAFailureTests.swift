import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

/// HA with three members and six protected VMs (two per host): each failure scenario ends with
/// every VM running exactly once, and the disk logs prove no two instances ever wrote.
@Suite("HA: failure response", .serialized, .enabled(if: canRunCluster))
struct HAFailureTests {
    static let names = ["vm1", "vm2", "vm3", "vm4", "vm5", "vm6"]

    /// Three members with vm1, vm2 on the first host, vm3, vm4 on the second, vm5, vm6 on the third,
    /// all writing their disks.
    static func sixVMs(deadMs: Int = 2000, heartbeatMs: Int = 250) throws -> HALab {
        let lab = try HALab(heartbeatMs: heartbeatMs, deadMs: deadMs)
        for (index, name) in names.enumerated() {
            let on = try lab.createVM(name, on: lab.hosts[index / 2])
            #expect(on.status == 0, "\(name): \(on.output)")
        }
        #expect(try eventually { try lab.sequences(names, through: lab.hosts[0]).values.allSatisfy { $0 > 20 } })
        #expect(lab.allRunningOnce(names), "\(lab.placements(names))")
        return lab
    }

    /// The VMs that run on `host` now.
    static func vms(on host: AgentHost, _ lab: HALab) -> [String] {
        lab.placements(names).filter { $0.value == [host.name] }.map(\.key).sorted()
    }

    /// A host crash (`kill -9` of its agent and its VMMs): the survivors restart its two VMs, each
    /// on exactly one of them, and the VMs on the survivors are not touched.
    @Test func aCrashedHostsVMsRestartOnTheSurvivorsOnce() throws {
        let lab = try Self.sixVMs()
        let victim = lab.hosts[0]
        let survivors = Array(lab.hosts.dropFirst())
        let before = try lab.sequences(Self.names, through: survivors[0])
        lab.crash(victim)
        let crashed = Date()
        #expect(eventually(seconds: 30) { lab.allRunningOnce(Self.names, among: survivors) }, "\(lab.placements(Self.names))")
        let elapsed = Date().timeIntervalSince(crashed)
        lab.restarted(["vm1", "vm2"])
        // Both restarted VMs were placed, not piled on one survivor: each has 22.9 GiB free but
        // the first restart uses some of it, so the second goes to the other.
        let placed = lab.placements(["vm1", "vm2"], among: survivors).values.compactMap(\.first)
        #expect(Set(placed).count == 2, "restarted VMs went to \(placed)")
        #expect(try eventually { try lab.sequences(Self.names, through: survivors[0]).allSatisfy { $0.value > (before[$0.key] ?? 0) + 20 } })
        let problems = try lab.checkDisks(Self.names, through: survivors[0])
        #expect(problems.isEmpty, "\(problems)")
        #expect(lab.liveVMMs().count == 6, "live VMMs: \(lab.liveVMMs())")
        // The failover is recorded with its timeline: failure, detection, recovery, each restart.
        let status = try #require(lab.haStatus(survivors[0]))
        let failovers = status["failovers"] as? [[String: Any]] ?? []
        let record = try #require(failovers.last { $0["failedHost"] as? String == victim.name }, "\(failovers)")
        let restarts = record["restarts"] as? [[String: Any]] ?? []
        #expect(Set(restarts.compactMap { $0["name"] as? String }) == ["vm1", "vm2"], "\(record)")
        #expect(record["recoveredAt"] != nil && restarts.allSatisfy { $0["firstInstructionAt"] != nil }, "\(record)")
        #expect(survivors.contains { !lab.events("haHostFailed", on: $0).isEmpty })
        print("HA crash: all VMs running again \(String(format: "%.2f", elapsed)) s after the crash (D = 2 s)")
    }

    /// A whole host frozen (`SIGSTOP` of its agent and VMMs) for longer than D, then resumed: its
    /// VMs were restarted elsewhere; on resume its old VMMs write nothing more and are stopped.
    @Test func aFrozenHostsVMsMoveAndItsOldVMMsWriteNothingOnResume() throws {
        let lab = try Self.sixVMs()
        let frozen = lab.hosts[1]
        let survivors = [lab.hosts[0], lab.hosts[2]]
        let oldVMMs = frozen.vmmPIDs.filter { isRunning($0) && HALab.isVMM($0) }
        #expect(oldVMMs.count == 2)
        let agent = try #require(frozen.pid)
        for pid in [agent] + oldVMMs { kill(pid, SIGSTOP) }
        var resumed = false
        defer { if !resumed { for pid in [agent] + oldVMMs { kill(pid, SIGCONT) } } }
        #expect(eventually(seconds: 30) { lab.allRunningOnce(Self.names, among: survivors) }, "\(lab.placements(Self.names, among: survivors))")
        lab.restarted(["vm3", "vm4"])
        #expect(try eventually { try lab.sequences(["vm3", "vm4"], through: survivors[0], among: survivors).values.allSatisfy { $0 > 100 } })
        for pid in [agent] + oldVMMs { kill(pid, SIGCONT) }
        resumed = true
        // On resume the old host finds its slot taken over: its VMMs stop, its VMs are lost there.
        #expect(eventually(seconds: 20) { oldVMMs.allSatisfy { !isRunning($0) } }, "the frozen host's VMMs still run")
        #expect(eventually(seconds: 10) { ["vm3", "vm4"].allSatisfy { powerState(frozen, $0) == "lost" } },
                "\(powerState(frozen, "vm3")), \(powerState(frozen, "vm4"))")
        #expect(try eventually { try lab.sequences(["vm3", "vm4"], through: survivors[0]).values.allSatisfy { $0 > 300 } })
        let problems = try lab.checkDisks(Self.names, through: survivors[0])
        #expect(problems.isEmpty, "\(problems)")
        #expect(lab.allRunningOnce(Self.names), "\(lab.placements(Self.names))")
    }

    /// The network of a host cut while it still reaches the volume: it is alive on the volume, so
    /// nothing moves, and its VMs go on writing.
    @Test func aHostCutFromTheNetworkKeepsItsVMs() throws {
        let lab = try Self.sixVMs()
        let cut = lab.hosts[2]
        let before = lab.placements(Self.names)
        let sequences = try lab.sequences(["vm5", "vm6"], through: lab.hosts[0])
        try lab.cluster.lab.setLink(cut.index, up: false)
        defer { try? lab.cluster.lab.setLink(cut.index, up: true) }
        // The host cannot be reached over the network.
        let probe = try curl(["-s", "-k", "--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}", "\(cut.url)/v1/host"])
        #expect(probe.stdout == "000" || probe.status != 0, "the cut host still answers: \(probe.stdout)")
        Thread.sleep(forTimeInterval: 3 * 2.0 + 2)  // three dead intervals and then some
        #expect(lab.placements(Self.names) == before, "VMs moved: \(lab.placements(Self.names))")
        #expect(try eventually { try lab.sequences(["vm5", "vm6"], through: lab.hosts[0]).allSatisfy { $0.value > (sequences[$0.key] ?? 0) + 50 } })
        for host in lab.hosts {
            let acted = lab.events("haRestarted", on: host) + lab.events("haHostFailed", on: host)
            #expect(acted.isEmpty, "\(host.name) acted: \(acted.map { $0["message"] ?? "" })")
        }
        let problems = try lab.checkDisks(Self.names, through: lab.hosts[0])
        #expect(problems.isEmpty, "\(problems)")
    }
}

@Suite("HA: monitoring, priorities, admission control, maintenance", .serialized, .enabled(if: canRunCluster))
struct HAPolicyTests {
    /// A monitored guest that sends tools heartbeats and then hangs is reset after the timeout, at
    /// most `maxResetsPerHour` times; a guest with no heartbeat at all is left alone.
    @Test func aHungGuestIsResetWithinItsBudget() throws {
        let lab = try HALab(hosts: 1, monitoringTimeout: 2, maxResetsPerHour: 2)
        let host = lab.hosts[0]
        // About five heartbeats, then it spins forever.
        let hung = try lab.createVM("hung", on: host, workload: ["--workload", "heartbeat", "--args", "2000000,5"], monitoring: true)
        #expect(hung.status == 0, "\(hung.output)")
        let silent = try lab.createVM("silent", on: host, workload: ["--workload", "idle"], monitoring: true)
        #expect(silent.status == 0, "\(silent.output)")
        // Heartbeats arrive and are shown in the VM's detail.
        let detail = { (try? host.local("GET", "/v1/vms/hung"))?.stdout ?? "" }
        #expect(eventually(seconds: 20) {
            ((try? JSONSerialization.jsonObject(with: Data(detail().utf8))) as? [String: Any])?["toolsHeartbeats"] as? Int ?? 0 > 0
        }, "\(detail().prefix(1500))")
        #expect(eventually(seconds: 60) { lab.events("vmMonitoringReset", on: host).count >= 2 },
                "resets: \(lab.events("vmMonitoringReset", on: host)); \(detail().prefix(1500))")
        // The budget is spent: it stays hung, not reset again.
        Thread.sleep(forTimeInterval: 6)
        let resets = lab.events("vmMonitoringReset", on: host)
        #expect(resets.count == 2 && resets.allSatisfy { $0["vmName"] as? String == "hung" }, "\(resets)")
        let console = try host.local("GET", "/v1/vms/hung/console").stdout
        #expect(console.components(separatedBy: "heartbeat: guest up").count - 1 == 3, "\(console.suffix(2000))")
        #expect(powerState(host, "hung") == "running" && powerState(host, "silent") == "running")
    }

    /// Capacity for only two of a failed host's three VMs: the high and medium priority ones run
    /// (though their names sort last), the low one waits with an event, and starts once room appears.
    @Test func highPriorityVMsRestartFirstWhenCapacityIsShort() throws {
        let lab = try HALab(capacityMiB: 200)
        let (h1, h2, h3) = (lab.hosts[0], lab.hosts[1], lab.hosts[2])
        for (name, priority) in [("c-high", "high"), ("b-medium", "medium"), ("a-low", "low")] {
            #expect(try lab.createVM(name, on: h1, priority: priority).status == 0)
        }
        // Fillers leave 72 MiB on each survivor: room for one 64 MiB VM each.
        for (name, host) in [("f1", h2), ("f2", h2), ("f3", h3), ("f4", h3)] {
            #expect(try lab.createVM(name, on: host).status == 0)
        }
        #expect(try eventually { try lab.sequences(["c-high", "b-medium", "a-low"], through: h2).values.allSatisfy { $0 > 10 } })
        lab.crash(h1)
        #expect(eventually(seconds: 30) { lab.allRunningOnce(["c-high", "b-medium"], among: [h2, h3]) },
                "\(lab.placements(["c-high", "b-medium", "a-low"], among: [h2, h3]))")
        #expect(eventually(seconds: 10) { [h2, h3].contains { host in
            lab.events("haRestartFailed", on: host).contains { ($0["message"] as? String ?? "").contains("'a-low'") }
        } })
        #expect(lab.placements(["a-low"], among: [h2, h3])["a-low"] == [])
        // Room appears: a filler is powered off and the low-priority VM restarts.
        #expect(try h2.vmctl(["power-off", "f1"]).status == 0)
        #expect(eventually(seconds: 30) { lab.allRunningOnce(["a-low"], among: [h2, h3]) })
        lab.restarted(["c-high", "b-medium", "a-low"])
        // The restarted guest writes its boot record a moment after it runs: wait for it (a
        // second run would add a boot too many, which no wait removes).
        var problems: [String] = []
        _ = try eventually(seconds: 10) {
            problems = try lab.checkDisks(["c-high", "b-medium", "a-low"], through: h2)
            return problems.isEmpty
        }
        #expect(problems.isEmpty, "\(problems)")
    }

    /// Admission control with N = 1: three members offering 200 MiB each keep 400 MiB after one
    /// failure; four protected 96 MiB VMs fit (384 MiB), a fifth is refused with the numbers.
    @Test func admissionControlRefusesThePowerOnThatBreaksN1() throws {
        let lab = try HALab(capacityMiB: 200, failuresToTolerate: 1)
        for index in 1...4 {
            let on = try lab.createVM("vm\(index)", on: lab.hosts[(index - 1) % 3], memory: "96M",
                                      workload: ["--workload", "idle"])
            #expect(on.status == 0, "vm\(index): \(on.output)")
        }
        let refused = try lab.createVM("vm5", on: lab.hosts[1], memory: "96M", workload: ["--workload", "idle"])
        #expect(refused.status != 0)
        #expect(refused.output.contains("admission control") && refused.output.contains("480 MiB") && refused.output.contains("400 MiB"),
                "\(refused.output)")
        #expect(powerState(lab.hosts[1], "vm5") == "poweredOff")
        // An unprotected VM is not counted.
        #expect(try lab.hosts[1].vmctl(["ha", "protect", "--off", "vm5"]).status == 0)
        #expect(try lab.hosts[1].vmctl(["power-on", "vm5"]).status == 0)
        let status = try #require(lab.haStatus(lab.hosts[2]))
        #expect(status["failoverCapacityOK"] as? Bool == true && (status["failoverRequiredBytes"] as? Int) == 384 << 20, "\(status)")
    }

    /// Maintenance mode hands a host's VMs to the others (a clean power-off and restart) and
    /// refuses new ones until the host leaves it.
    @Test func maintenanceModeEvacuatesTheHostAndRefusesNewVMs() throws {
        let lab = try HALab()
        let (h1, h2, h3) = (lab.hosts[0], lab.hosts[1], lab.hosts[2])
        #expect(try lab.createVM("p1", on: h1).status == 0)
        // Unprotected VMs are handed over too.
        #expect(try lab.createVM("u1", on: h1).status == 0)
        #expect(try h1.vmctl(["ha", "protect", "--off", "u1"]).status == 0)
        #expect(try eventually { try lab.sequences(["p1", "u1"], through: h1).values.allSatisfy { $0 > 10 } })
        let entered = try h1.vmctl(["maintenance", "enter"])
        #expect(entered.status == 0, "\(entered.output)")
        #expect(eventually(seconds: 30) { lab.allRunningOnce(["p1", "u1"], among: [h2, h3]) }, "\(lab.placements(["p1", "u1"]))")
        lab.restarted(["p1", "u1"])
        let refused = try lab.createVM("new", on: h1, workload: ["--workload", "idle"])
        #expect(refused.status != 0 && refused.output.contains("maintenance mode"), "\(refused.output)")
        let members = lab.haStatus(h2)?["members"] as? [[String: Any]] ?? []
        #expect(members.first { $0["name"] as? String == h1.name }?["maintenance"] as? Bool == true)
        #expect(try h1.vmctl(["maintenance", "exit"]).status == 0)
        #expect(try h1.vmctl(["power-on", "new"]).status == 0)
        let problems = try lab.checkDisks(["p1", "u1"], through: h2)
        #expect(problems.isEmpty, "\(problems)")
    }
}
