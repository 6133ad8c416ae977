import Foundation
import Testing
import HostAgent
import VMFSCore
import VMFSTestSupport

@Suite("Host agent: VMs as VMM processes", .serialized, .enabled(if: hasKVM))
struct AgentVMTests {
    /// A VM created and powered on through the agent runs in its own vmx process, writes its disk
    /// through the agent's disk channel, powers itself off, and leaves exactly its pattern behind.
    @Test func guestWritesItsDiskThroughTheAgentAndPowersOff() throws {
        try Self.runPatternGuest(on: try AgentScratch())
    }

    /// The same on a datastore reached over iSCSI (a tgt LUN, Disk Paxos): the agent's membership
    /// and the VM's disk channel go through the agent's own iSCSI session.
    @Test func guestWritesItsDiskOnAnISCSIDatastore() throws {
        guard isRoot, TgtTarget.isAvailable else { try Test.cancel("tgtd needs root and the tgt package (Tools/scripts/setup.sh)") }
        let tgt = try TgtTarget()
        let target = try tgt.addTarget(size: 4 << 30)
        try Self.runPatternGuest(on: try AgentScratch(device: tgt.url(target), mkfsArguments: [
            "--atomic-update", "paxos", "--heartbeat-interval", "200", "--dead-interval", "4000", "--io-timeout", "800"]))
    }

    /// Creates vm1 with the diskWritePattern workload, powers it on, and checks its disk and log.
    private static func runPatternGuest(on scratch: AgentScratch) throws {
        let agent = try HostAgent(configuration: scratch.configuration(host: "esx01"))
        agent.start()
        defer { agent.shutdown(powerOffVMs: true) }
        let create = try agent.create(VMCreateRequest(datastore: "ds1", name: "vm1", vcpuCount: 2, memoryBytes: 64 << 20,
                                                      diskBytes: [256 << 20],
                                                      boot: .testGuest(image: "guest.elf", workload: "diskWritePattern", arguments: [77, 32])))
        let created = try #require(finished(agent, create))
        #expect(created.state == .success, "\(created.error?.message ?? "")")
        let on = try agent.powerOn("vm1")
        let powered = try #require(finished(agent, on))
        #expect(powered.state == .success, "\(powered.error?.message ?? "")")
        let vm = try agent.lookup("vm1")
        #expect(eventually { agent.context.events.events(after: 0).contains { $0.kind == .vmGuestPoweredOff } },
                "\(agent.context.events.events(after: 0).map(\.message))")
        #expect(vm.power == .poweredOff)
        agent.shutdown(powerOffVMs: true)
        let disk = try scratch.contents(of: "vm1-flat.vmdk")
        // The first pattern block is at offset 0: 8 KiB of mix64(seed ^ offset) words.
        for word in 0..<1024 {
            let value = disk[word * 8..<word * 8 + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            #expect(value == mix64(77 ^ UInt64(word * 8)))
            if value != mix64(77 ^ UInt64(word * 8)) { break }
        }
        let log = String(decoding: try scratch.contents(of: "vm1.log"), as: UTF8.self)
        #expect(log.contains("pattern written: 32 blocks"))
    }
}
