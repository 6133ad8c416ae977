import Foundation
import Testing
import HostAgent
import VMFSCore
import VMFSTestSupport

@Suite("Host agent: restart and adoption", .serialized, .enabled(if: hasKVM))
struct AgentRestartTests {
    /// Creates a sequence-writing VM and powers it on.
    static func startSequenceVM(_ agent: HostAgent, name: String) throws -> ManagedVM {
        let create = try agent.create(VMCreateRequest(datastore: "ds1", name: name, vcpuCount: 1, memoryBytes: 64 << 20,
                                                      diskBytes: [64 << 20],
                                                      boot: .testGuest(image: "guest.elf", workload: "diskSequence", arguments: [1024, 1, 0, 20000])))
        #expect(finished(agent, create)?.state == .success)
        let on = try agent.powerOn(name)
        let done = try #require(finished(agent, on))
        #expect(done.state == .success, "\(done.error?.message ?? "")")
        return try agent.lookup(name)
    }

    /// The highest sequence number VM `name` has written, read from its disk through the agent's
    /// own volume (while it runs, its disk is locked by this host).
    static func progress(_ vm: ManagedVM) throws -> UInt64? {
        let handle = try vm.datastore.volume().open("\(vm.name)-flat.vmdk", access: .readOnly)
        defer { try? handle.close() }
        return SequenceLog(disk: try handle.read(count: 1025 * 512, at: 0)).lastSequence
    }

    /// A graceful agent restart hands the host's membership to the next agent: both VMs keep
    /// running (their guests keep writing throughout), the new agent adopts them with their locks,
    /// and their sequence logs show one uninterrupted run each.
    @Test func restartedAgentAdoptsRunningVMs() throws {
        let scratch = try AgentScratch()
        let configuration = scratch.configuration(host: "esx01")
        let first = try HostAgent(configuration: configuration)
        first.start()
        let vms = [try Self.startSequenceVM(first, name: "a"), try Self.startSequenceVM(first, name: "b")]
        #expect(try eventually { try vms.allSatisfy { try (Self.progress($0) ?? 0) > 50 } })
        let before = try vms.map { try Self.progress($0) ?? 0 }
        first.shutdown(powerOffVMs: false)

        let second = try HostAgent(configuration: configuration)
        second.start()
        defer { second.shutdown(powerOffVMs: true) }
        let adopted = try ["a", "b"].map { try second.lookup($0) }
        // Paused while the lease gap of the restart lasted (docs/AGENT.md: the VMM pauses when
        // its lease runs out before the new agent renews it; under load the hand-over can take
        // longer than the write window), running again once the new agent's lease arrives.
        #expect(adopted.allSatisfy { $0.power == .running || $0.power == .paused })
        #expect(eventually { adopted.allSatisfy { $0.power == .running } })
        #expect(second.context.events.events(after: 0).filter { $0.kind == .vmAdopted }.count == 2)
        #expect(try eventually { try zip(adopted, before).allSatisfy { (vm, old) in try (Self.progress(vm) ?? 0) > old + 100 } })
        for vm in adopted { try vm.powerOffNow() }
        for name in ["a", "b"] {
            let log = SequenceLog(disk: Array(try scratch.contents(of: "\(name)-flat.vmdk").prefix(1025 * 512)))
            #expect(log.problems.isEmpty, "\(name): \(log.problems)")
            #expect(log.boots == 1)
        }
    }
}
