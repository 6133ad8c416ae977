import Foundation
import Testing
@testable import HostAgent
import LiveMigration
import SystemSupport
import VMFSCore
import VMFSTestSupport

/// Live migration between two host agents of one process on one shared volume: real `vmx`
/// processes, authenticated TCP streams on the loopback interface, the lock handover on the volume.
@Suite("Host agent: live migration", .serialized, .enabled(if: hasKVM))
struct AgentMigrationTests {
    /// Two agents (esx01, esx02) on the scratch volume.
    final class Pair: @unchecked Sendable {
        let scratch: AgentScratch
        let agents: [HostAgent]

        init() throws {
            let scratch = try AgentScratch()
            self.scratch = scratch
            agents = try ["esx01", "esx02"].map { try HostAgent(configuration: scratch.configuration(host: $0)) }
            for agent in agents { agent.start() }
        }

        deinit { for agent in agents { agent.shutdown(powerOffVMs: true) } }

        /// Creates VM `name` on esx01 and powers it on.
        func start(_ name: String, vcpus: Int, workload: String, arguments: [UInt64], memory: UInt64 = 64 << 20) throws -> ManagedVM {
            let create = try agents[0].create(VMCreateRequest(datastore: "ds1", name: name, vcpuCount: vcpus, memoryBytes: memory,
                                                              diskBytes: [16 << 20], boot: .testGuest(image: "guest.elf", workload: workload,
                                                                                                      arguments: arguments)))
            #expect(finished(agents[0], create)?.state == .success)
            let on = try #require(finished(agents[0], try agents[0].powerOn(name)))
            #expect(on.state == .success, "\(on.error?.message ?? "")")
            return try agents[0].lookup(name)
        }

        /// Migrates VM `name` from agent `from` to the other one and waits for the task.
        func migrate(_ name: String, from: Int, options: MigrationOptions = MigrationOptions()) throws -> AgentTask {
            let task = try agents[from].migrate(name, to: LocalMigrationPeer(agent: agents[1 - from]), options: options)
            return try #require(finished(agents[from], task, seconds: 120))
        }

        /// What the VMMs wrote to their stderr logs (diagnostics for a failed expectation).
        func vmmLogs() -> String {
            var text = ""
            for host in ["esx01", "esx02"] {
                let directory = scratch.directory.appendingPathComponent("\(host)/run/vms")
                for file in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where file.hasSuffix(".vmx.log") {
                    text += "--- \(host) \(file)\n" + ((try? String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)) ?? "")
                }
            }
            return text
        }

        /// The VM's log as it is on the volume (read without a lock: one of the agents holds it).
        func log(_ name: String) throws -> String {
            let device = try agents[0].datastore(named: "ds1").volume().device
            return String(decoding: try VolumeInspector(device: device).contents(of: "\(name).log"), as: UTF8.self)
        }
    }

    /// The memory-generations guest keeps writing a generation pattern into every page it owns
    /// and, after each migration, verifies every one of them (a lost, stale or torn page powers
    /// it off with a failure). It powers off with success after three verified migrations; its
    /// UART output continues in the VM's log on the volume across hosts.
    @Test(arguments: [1, 4]) func memoryGuestVerifiesEveryPageAfterEachMigration(vcpus: Int) throws {
        let pair = try Pair()
        // 2 MiB per writer at 5 MB/s each, three migrations, then success.
        _ = try pair.start("mem", vcpus: vcpus, workload: "memoryGenerations", arguments: [2 << 20, 5_000_000, 0, 0, 3, 7])
        #expect(try eventually { try pair.log("mem").contains("memgen:") })
        for hop in 0..<3 {
            let task = try pair.migrate("mem", from: hop % 2)
            #expect(task.state == .success, "migration \(hop + 1): \(task.error?.message ?? "")\n\(pair.vmmLogs())")
            let status = try pair.agents[hop % 2].migrationStatus("mem")
            #expect(status.state == .completed && status.progress.transferredBytes > 0, "\(status)")
            #expect(try pair.agents[hop % 2].lookup("mem").power == .poweredOff)
        }
        // After the third migration the guest verified its pages once more and powered itself off with success.
        let last = pair.agents[1]
        // The power state changes before the exit is recorded and the log closed: wait for the event.
        #expect(eventually(seconds: 60) { last.context.events.events(after: 0).contains { $0.kind == .vmGuestPoweredOff } })
        let log = try pair.log("mem")
        #expect(log.contains("3 migrations verified by every writer"), "\(log)")
        #expect(!log.contains("is wrong"), "\(log)")
        for epoch in 1...3 { #expect(log.contains("epoch \(epoch): verified"), "epoch \(epoch) missing:\n\(log)") }
        #expect(log.components(separatedBy: "migrated in from host").count - 1 == 3, "\(log)")
        let events = last.context.events.events(after: 0)
        #expect(events.contains { $0.kind == .vmGuestPoweredOff && $0.message.contains("status 0") }, "\(events.map(\.message))")
        #expect(pair.agents[0].context.events.events(after: 0).filter { $0.kind == .vmMigrated }.count == 2)
    }

    /// Ping-pong: 20 migrations of a guest writing numbered records to its disk. The records show
    /// no gap, no duplicate, one boot, and epochs (restore counts) that only grow: nothing was
    /// written by a host after it handed the VM over.
    @Test func twentyMigrationsBackAndForthKeepTheDiskSequenceIntact() throws {
        let pair = try Pair()
        _ = try pair.start("seq", vcpus: 1, workload: "diskSequence", arguments: [1024, 1, 0, 20000])
        var downtimes: [Double] = []
        for hop in 0..<20 {
            let task = try pair.migrate("seq", from: hop % 2)
            #expect(task.state == .success, "migration \(hop + 1): \(task.error?.message ?? "")\n\(pair.vmmLogs())")
            if let downtime = try pair.agents[hop % 2].migrationStatus("seq").downtimeMilliseconds { downtimes.append(downtime) }
        }
        #expect(downtimes.count == 20)
        let vm = try pair.agents[0].lookup("seq")
        #expect(vm.power == .running)
        #expect(try pair.agents[1].lookup("seq").power == .poweredOff)
        try vm.powerOffNow()
        let disk = try pair.scratch.contents(of: "seq-flat.vmdk")
        let log = SequenceLog(disk: Array(disk.prefix(1025 * 512)))
        #expect(log.problems.isEmpty, "\(log.problems)")
        #expect(log.boots == 1)
        #expect((log.lastSequence ?? 0) > 100)
        let epochs = log.epochs
        #expect(epochs == epochs.sorted() && (epochs.last ?? 0) >= 1, "\(epochs)")
    }

    /// While a migration runs, other operations on the VM are refused; a cancelled migration
    /// leaves the VM running on the source and nothing running at the destination.
    @Test func aCancelledMigrationLeavesTheVMRunningAtTheSource() throws {
        let pair = try Pair()
        // 32 MiB dirtied continuously over a 4 MB/s link: the copy takes long enough to cancel it.
        _ = try pair.start("slow", vcpus: 1, workload: "memoryGenerations", arguments: [32 << 20, 0, 0, 0, 0, 1], memory: 128 << 20)
        let task = try pair.agents[0].migrate("slow", to: LocalMigrationPeer(agent: pair.agents[1]), options: MigrationOptions(
            maximumBandwidthBytesPerSecond: 4_000_000, postCopy: false))
        #expect(try eventually { (try? pair.agents[0].migrationStatus("slow").state) == .copying })
        let off = try #require(finished(pair.agents[0], try pair.agents[0].powerOff("slow")))
        #expect(off.state == .error && off.error?.message.contains("migration is in progress") == true, "\(String(describing: off.error))")
        try pair.agents[0].cancelMigration("slow")
        let done = try #require(finished(pair.agents[0], task, seconds: 60))
        #expect(done.state == .error)
        #expect(try pair.agents[0].migrationStatus("slow").state == .cancelled)
        #expect(try pair.agents[0].lookup("slow").power == .running)
        #expect(try eventually { try pair.agents[1].lookup("slow").power == .poweredOff })
    }

    /// The destination's VMM dies in the middle of the copy: the migration fails and the VM runs
    /// on at the source, exactly once.
    @Test func aDestinationKilledMidCopyLeavesTheVMRunningAtTheSource() throws {
        let pair = try Pair()
        _ = try pair.start("kill", vcpus: 1, workload: "memoryGenerations", arguments: [32 << 20, 0, 0, 0, 0, 2], memory: 128 << 20)
        let task = try pair.agents[0].migrate("kill", to: LocalMigrationPeer(agent: pair.agents[1]), options: MigrationOptions(
            maximumBandwidthBytesPerSecond: 4_000_000, postCopy: false, stallTimeoutMilliseconds: 1000))
        #expect(try eventually { (try? pair.agents[0].migrationStatus("kill").state) == .copying })
        let incoming = try pair.agents[1].lookup("kill")
        let session = try #require(incoming.migration.withLock { $0 }?.state.withLock { $0.incoming })
        session.process.kill()
        let done = try #require(finished(pair.agents[0], task, seconds: 60))
        #expect(done.state == .error, "\(String(describing: done.error))")
        #expect(try pair.agents[0].lookup("kill").power == .running)
        #expect(try eventually { try pair.agents[1].lookup("kill").power == .poweredOff })
        // The source still holds every file: the destination cannot open the VM.
        #expect(throws: AgentError.self) { try pair.agents[1].lookup("kill").powerOn(progress: nil) }
    }

    /// A destination whose datastore of that name is another volume is refused before anything moves.
    @Test func aDestinationWithoutTheVolumeIsRefusedBeforeAnythingMoves() throws {
        let pair = try Pair()
        _ = try pair.start("stay", vcpus: 1, workload: "idle", arguments: [])
        let other = try AgentScratch()
        let stranger = try HostAgent(configuration: other.configuration(host: "esx03"))
        stranger.start()
        defer { stranger.shutdown(powerOffVMs: true) }
        let task = try pair.agents[0].migrate("stay", to: LocalMigrationPeer(agent: stranger), options: MigrationOptions())
        let done = try #require(finished(pair.agents[0], task))
        #expect(done.state == .error)
        #expect(done.error?.message.contains("refused") == true, "\(String(describing: done.error))")
        #expect(try pair.agents[0].lookup("stay").power == .running)
        #expect(try pair.agents[0].migrationStatus("stay").state == .failed)
    }
}
