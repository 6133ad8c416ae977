import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

/// Live migration between real `vmhostd` processes in network namespaces, through their TLS APIs
/// (`vmctl migrate`), the streams between the namespaces, the lock handover on the shared volume.
@Suite("Live migration between host agents in network namespaces", .serialized, .enabled(if: canRunCluster))
struct MigrationClusterTests {
    /// A disk-sequence guest moves h1 → h2 (vmctl in a client namespace against h1's remote API)
    /// and h2 → h3 (vmctl on h2): it runs on exactly one host at a time, and its disk records show
    /// no gap, no duplicate, one boot, and nothing written by a host after it handed the VM over.
    @Test func aVMMovesAcrossThreeHostsAndItsDiskSequenceStaysIntact() throws {
        let cluster = try TestCluster(hosts: 3)
        try cluster.startAll()
        let (h1, h2, h3) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        let vmctl = toolsDirectory.appendingPathComponent("vmctl").path
        let remote = ["--host", h1.url, "--token", h1.token, "--ca", h1.certificatePath]
        let created = try cluster.lab.run(in: cluster.client(), [vmctl, "create", "--datastore", "ds1", "--name", "web",
                                                                 "--guest", try testGuestImage(), "--workload", "diskSequence",
                                                                 "--args", "1024,1,0,20000", "--disk", "16M", "--memory", "64M"] + remote)
        #expect(created.status == 0, "\(created.output)")
        #expect(try cluster.lab.run(in: cluster.client(), [vmctl, "power-on", "web"] + remote).status == 0)
        #expect(try eventually { (try sequenceLog(h1, file: "web-flat.vmdk")?.lastSequence ?? 0) > 20 })

        let first = try cluster.lab.run(in: cluster.client(), [vmctl, "migrate", "web", "--to", h2.url, "--to-token", h2.token,
                                                               "--to-ca", h2.certificatePath] + remote)
        #expect(first.status == 0, "\(first.output)\n\(h1.log(lines: 30))\n\(h2.log(lines: 30))")
        #expect(first.stdout.contains("migrated to \(h2.name)") && first.stdout.contains("downtime"), "\(first.output)")
        #expect(powerState(h2, "web") == "running")
        #expect(powerState(h1, "web") == "poweredOff")
        let atH2 = try sequenceLog(h2, file: "web-flat.vmdk")?.lastSequence ?? 0
        #expect(try eventually { (try sequenceLog(h2, file: "web-flat.vmdk")?.lastSequence ?? 0) > atH2 + 20 })

        let second = try h2.vmctl(["migrate", "web", "--to", h3.url, "--to-token", h3.token, "--to-ca", h3.certificatePath])
        #expect(second.status == 0, "\(second.output)\n\(h2.log(lines: 30))\n\(h3.log(lines: 30))")
        #expect(powerState(h3, "web") == "running")
        #expect(powerState(h2, "web") == "poweredOff")
        let atH3 = try sequenceLog(h3, file: "web-flat.vmdk")?.lastSequence ?? 0
        #expect(try eventually { (try sequenceLog(h3, file: "web-flat.vmdk")?.lastSequence ?? 0) > atH3 + 20 })
        #expect(try h3.vmctl(["power-off", "web"]).status == 0)
        let log = try #require(try sequenceLog(h3, file: "web-flat.vmdk"))
        #expect(log.problems.isEmpty, "\(log.problems)")
        #expect(log.boots == 1)
        #expect(log.epochs == log.epochs.sorted() && (log.epochs.last ?? 0) == 2, "\(log.epochs)")
        // The VM's log on the volume tells the story on every host.
        let events = try h1.local("GET", "/v1/events?after=0").stdout
        #expect(events.contains("vmMigrated"), "\(events)")
    }

    /// The source host dies right after the handoff (its agent stalls there, then the whole host
    /// is `kill -9`ed: agent and VMM): the VM runs on at the destination, whose locks the dead
    /// host's end does not disturb. Its disk records show one boot, no gap, no duplicate,
    /// and nothing written by the source after the handoff.
    @Test func aSourceKilledAfterTheHandoffLeavesTheVMRunningAtTheDestination() throws {
        let cluster = try TestCluster(hosts: 2)
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        h1.environment["VMHOSTD_FAULT_STALL_AFTER_HANDOFF_MS"] = "60000"
        try cluster.startAll()
        let created = try h1.vmctl(["create", "--datastore", "ds1", "--name", "web", "--guest", try testGuestImage(),
                                    "--workload", "diskSequence", "--args", "1024,1,0,20000", "--disk", "16M", "--memory", "64M"])
        #expect(created.status == 0, "\(created.output)")
        #expect(try h1.vmctl(["power-on", "web"]).status == 0)
        #expect(try eventually { (try sequenceLog(h1, file: "web-flat.vmdk")?.lastSequence ?? 0) > 20 })
        let started = try h1.vmctl(["migrate", "web", "--to", h2.url, "--to-token", h2.token, "--to-ca", h2.certificatePath, "--no-wait"])
        #expect(started.status == 0, "\(started.output)")
        // The destination committed the handover and resumed the guest; the source is stalled
        // before its cleanup, its VMM paused.
        #expect(try eventually(seconds: 60) { powerState(h2, "web") == "running" }, "\(h1.log(lines: 30))\n\(h2.log(lines: 30))")
        let sourceVMMs = h1.vmmPIDs.filter(isRunning)
        #expect(!sourceVMMs.isEmpty, "the source's VMM ended before the stall")
        if let agent = h1.pid { kill(agent, SIGKILL) }
        for vmm in sourceVMMs { kill(vmm, SIGKILL) }
        h1.kill(signal: SIGKILL)
        // Well past the dead interval (D = 0.8 s), the guest still writes through the destination.
        let atKill = try sequenceLog(h2, file: "web-flat.vmdk")?.lastSequence ?? 0
        Thread.sleep(forTimeInterval: 3)
        #expect(try eventually { (try sequenceLog(h2, file: "web-flat.vmdk")?.lastSequence ?? 0) > atKill + 20 })
        #expect(powerState(h2, "web") == "running")
        #expect(try h2.vmctl(["power-off", "web"]).status == 0)
        let log = try #require(try sequenceLog(h2, file: "web-flat.vmdk"))
        #expect(log.problems.isEmpty, "\(log.problems)")
        #expect(log.boots == 1)
        #expect(log.epochs == log.epochs.sorted() && (log.epochs.last ?? 0) == 1, "\(log.epochs)")
        // Powered on again on the destination: its locks are its own, nobody else's.
        #expect(try h2.vmctl(["power-on", "web"]).status == 0)
        #expect(try h2.vmctl(["power-off", "web"]).status == 0)
    }

    /// The destination's link goes down in the middle of the copy: the migration is aborted and
    /// the VM runs on at the source (the guest was never paused for it); the destination drops its VMM.
    @Test func aLinkCutMidCopyLeavesTheVMRunningAtTheSource() throws {
        let cluster = try TestCluster(hosts: 2)
        try cluster.startAll()
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        let created = try h1.vmctl(["create", "--datastore", "ds1", "--name", "busy", "--guest", try testGuestImage(),
                                    "--workload", "memoryGenerations", "--args", "\(32 << 20),0,0,0,0,3", "--disk", "16M", "--memory", "128M"])
        #expect(created.status == 0, "\(created.output)")
        #expect(try h1.vmctl(["power-on", "busy"]).status == 0)
        let started = try h1.vmctl(["migrate", "busy", "--to", h2.url, "--to-token", h2.token, "--to-ca", h2.certificatePath,
                                    "--max-bandwidth", "4000000", "--no-post-copy", "--no-wait"])
        #expect(started.status == 0, "\(started.output)")
        #expect(try eventually { (try h1.local("GET", "/v1/vms/busy/migration").stdout).contains("\"copying\"") })
        try cluster.lab.setLink(2, up: false)
        defer { try? cluster.lab.setLink(2, up: true) }
        #expect(try eventually(seconds: 60) { (try h1.local("GET", "/v1/vms/busy/migration").stdout).contains("\"failed\"") })
        #expect(powerState(h1, "busy") == "running")
        #expect(try eventually(seconds: 30) { powerState(h2, "busy") == "poweredOff" })
        #expect(try h1.vmctl(["power-off", "busy"]).status == 0)
    }
}
