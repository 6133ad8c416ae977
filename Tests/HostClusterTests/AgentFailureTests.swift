import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

@Suite("Host agent failures and restarts", .serialized, .enabled(if: canRunCluster))
struct AgentFailureTests {
    static func createSequenceVM(_ host: AgentHost, _ name: String) throws {
        let created = try host.vmctl(["create", "--datastore", "ds1", "--name", name, "--guest", try testGuestImage(),
                                      "--workload", "diskSequence", "--args", "1024,1,0,100000", "--disk", "64M", "--memory", "64M"])
        #expect(created.status == 0, "\(created.output)")
        let on = try host.vmctl(["power-on", name])
        #expect(on.status == 0, "\(on.output)")
    }

    /// `kill -9` of an agent: its VMM stops at the end of its lease (the host's write window
    /// D − T, 0.5 s here), nothing lands on its disk afterwards (read through another host once that
    /// host recovered the dead one), and with no agent coming back it powers off after the orphan timeout.
    @Test func aKilledAgentsVMsWriteNothingAfterItsLease() throws {
        let cluster = try TestCluster(hosts: 2, extraHost: ["orphan_timeout_ms = 3000"])
        try cluster.startAll()
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        try Self.createSequenceVM(h1, "app")
        #expect(try eventually { (try sequenceLog(h1, file: "app-flat.vmdk")?.lastSequence ?? 0) > 100 })
        let vmm = try #require(h1.vmmPIDs.first)
        h1.kill(signal: SIGKILL)
        let killed = Date()
        // h2 sees h1 dead after D (0.8 s), recovers it, and can then read the VM's disk.
        var first: SequenceLog?
        #expect(try eventually(seconds: 20) {
            first = try sequenceLog(h2, file: "app-flat.vmdk")
            return first != nil
        })
        #expect(Date().timeIntervalSince(killed) > 0.5)
        Thread.sleep(forTimeInterval: 1.5)
        let second = try #require(try sequenceLog(h2, file: "app-flat.vmdk"))
        #expect(first == second, "the VM wrote after its host's lease expired: seq \(first?.lastSequence ?? 0) → \(second.lastSequence ?? 0)")
        #expect(second.problems.isEmpty, "\(second.problems)")
        // The orphaned VMM gives up after its orphan timeout.
        #expect(eventually(seconds: 15) { !isRunning(vmm) }, "the VMM of a dead agent is still running")
    }

    /// A graceful restart (SIGTERM, as systemctl restart sends) while two VMs run: the guests go on
    /// writing, the new agent adopts and controls them, and each VM's log shows one uninterrupted run.
    @Test func restartingTheAgentKeepsItsVMsRunning() throws {
        let cluster = try TestCluster(hosts: 1)
        try cluster.startAll()
        let h1 = cluster.hosts[0]
        try Self.createSequenceVM(h1, "a")
        try Self.createSequenceVM(h1, "b")
        #expect(try eventually { try ["a", "b"].allSatisfy { (try sequenceLog(h1, file: "\($0)-flat.vmdk")?.lastSequence ?? 0) > 50 } })
        let vmms = Set(h1.vmmPIDs)
        let before = try ["a", "b"].map { try sequenceLog(h1, file: "\($0)-flat.vmdk")?.lastSequence ?? 0 }
        h1.kill(signal: SIGTERM)
        try h1.start()
        #expect(Set(h1.vmmPIDs) == vmms, "the VMMs were replaced, not adopted")
        #expect(powerState(h1, "a") == "running" && powerState(h1, "b") == "running")
        #expect(try h1.local("GET", "/v1/events").stdout.components(separatedBy: "vmAdopted").count - 1 == 2)
        #expect(try eventually {
            let now = try ["a", "b"].map { try sequenceLog(h1, file: "\($0)-flat.vmdk")?.lastSequence ?? 0 }
            return zip(now, before).allSatisfy { $0 > $1 + 100 }
        }, "the guests did not go on writing after the restart")
        for name in ["a", "b"] {
            #expect(try h1.vmctl(["power-off", name]).status == 0)
            let log = try #require(try sequenceLog(h1, file: "\(name)-flat.vmdk"))
            #expect(log.problems.isEmpty && log.boots == 1, "\(name): \(log.problems), boots \(log.boots)")
        }
    }
}

@Suite("Host agent: losing the volume", .serialized, .enabled(if: canRunCluster))
struct AgentMembershipLossTests {
    /// h1 is frozen (SIGSTOP) past the dead interval: its VM pauses when its lease ends, h2
    /// recovers h1 and runs the VM. When h1 resumes it finds its slot taken over: it stops the old
    /// VMM (which wrote nothing meanwhile), marks the VM lost and says so in an event. The disk's
    /// log shows two boots, one after the other, never both at once.
    @Test func aHostThatLostItsSlotStopsItsVMsWhichRunElsewhere() throws {
        let cluster = try TestCluster(hosts: 2)
        try cluster.startAll()
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        try AgentFailureTests.createSequenceVM(h1, "svc")
        #expect(try eventually { (try sequenceLog(h1, file: "svc-flat.vmdk")?.lastSequence ?? 0) > 50 })
        let oldVMM = try #require(h1.vmmPIDs.first)
        let agent = try #require(h1.pid)
        kill(agent, SIGSTOP)
        defer { kill(agent, SIGCONT) }
        // h2 sees h1 dead after D, recovers it, and can run the VM.
        #expect(try h2.local("POST", "/v1/vms/register", json: #"{"volume":"ds1","name":"svc"}"#).status == 0)
        #expect(eventually(seconds: 20) { ((try? h2.vmctl(["power-on", "svc"]))?.status ?? 1) == 0 })
        #expect(powerState(h2, "svc") == "running")
        #expect(try eventually { (try sequenceLog(h2, file: "svc-flat.vmdk")?.boots ?? 0) == 2 })
        kill(agent, SIGCONT)
        #expect(eventually(seconds: 20) { powerState(h1, "svc") == "lost" }, "h1 says \(powerState(h1, "svc"))")
        #expect(eventually(seconds: 10) { !isRunning(oldVMM) }, "h1's VMM of the VM still runs")
        let events = try h1.local("GET", "/v1/events").stdout
        #expect(events.contains("volumeMembershipLost") && events.contains("vmLockLost"), "\(events.suffix(2000))")
        #expect(try eventually { (try sequenceLog(h2, file: "svc-flat.vmdk")?.lastSequence ?? 0) > 200 })
        #expect(try h2.vmctl(["power-off", "svc"]).status == 0)
        let log = try #require(try sequenceLog(h2, file: "svc-flat.vmdk"))
        #expect(log.problems.isEmpty && log.boots == 2, "\(log.problems), boots \(log.boots)")
    }
}
