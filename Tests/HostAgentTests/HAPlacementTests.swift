import Foundation
import Testing
@testable import HostAgent

@Suite("HA placement, admission control and stored files")
struct HAPlacementTests {
    static let mib: UInt64 = 1 << 20

    static func candidate(_ name: String, _ priority: HAConfiguration.Priority, _ mib: UInt64) -> HAPlacement.Candidate {
        HAPlacement.Candidate(uuid: "u-\(name)", name: name, priority: priority, memoryBytes: mib * Self.mib)
    }

    /// High priority first (whatever the names), each to the member with the most free memory.
    @Test func highPriorityGoesFirstToTheMemberWithTheMostRoom() {
        let candidates = [Self.candidate("a", .low, 64), Self.candidate("b", .medium, 64), Self.candidate("c", .high, 64)]
        let members = [HAPlacement.Member(name: "h2", freeMemoryBytes: 72 * Self.mib), HAPlacement.Member(name: "h3", freeMemoryBytes: 100 * Self.mib)]
        let (assignments, unplaced) = HAPlacement.plan(candidates, on: members)
        #expect(assignments == ["u-c": "h3", "u-b": "h2"])
        #expect(unplaced == ["u-a"])
    }

    /// Ties go to the first name; the same input gives the same plan whatever its order.
    @Test func thePlanIsTheSameOnEveryMember() {
        let candidates = (1...12).map { Self.candidate("vm\($0)", [.high, .medium, .low][$0 % 3], UInt64(16 * $0)) }
        let members = ["h1", "h2", "h3"].map { HAPlacement.Member(name: $0, freeMemoryBytes: 512 * Self.mib) }
        let first = HAPlacement.plan(candidates, on: members)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let again = HAPlacement.plan(candidates.shuffled(using: &generator), on: members.shuffled(using: &generator))
            #expect(again.assignments == first.assignments && again.unplaced == first.unplaced)
        }
        let tie = HAPlacement.plan([Self.candidate("x", .medium, 1)], on: members)
        #expect(tie.assignments == ["u-x": "h1"])
        // Nothing is placed beyond a member's room.
        var used: [String: UInt64] = [:]
        for (uuid, member) in first.assignments {
            used[member, default: 0] += candidates.first { $0.uuid == uuid }?.memoryBytes ?? 0
        }
        #expect(used.values.allSatisfy { $0 <= 512 * Self.mib })
    }

    /// With no member, everything is unplaced, high priority first.
    @Test func withoutMembersEverythingWaits() {
        let (assignments, unplaced) = HAPlacement.plan([Self.candidate("a", .low, 1), Self.candidate("b", .high, 1)], on: [])
        #expect(assignments.isEmpty && unplaced == ["u-b", "u-a"])
    }

    /// Admission control keeps the capacity of the members that survive the largest failures.
    @Test func failoverCapacityDropsTheLargestMembers() {
        let capacities = [200, 300, 400].map { UInt64($0) * Self.mib }
        let one = HAPlacement.failoverCapacity(capacities: capacities, protectedMemory: 500 * Self.mib, failures: 1)
        #expect(one.available == 500 * Self.mib && one.ok)
        let over = HAPlacement.failoverCapacity(capacities: capacities, protectedMemory: 501 * Self.mib, failures: 1)
        #expect(!over.ok)
        let all = HAPlacement.failoverCapacity(capacities: capacities, protectedMemory: 0, failures: 3)
        #expect(all.available == 0 && !all.ok)
        let none = HAPlacement.failoverCapacity(capacities: capacities, protectedMemory: 900 * Self.mib, failures: 0)
        #expect(none.ok)
    }

    /// Values read from a volume are checked before any arithmetic uses them.
    @Test func storedFilesOutOfRangeAreRefused() throws {
        var configuration = HAConfiguration(cluster: "lab", members: ["h1", "h2"])
        configuration.vms["u1"] = .init(name: "vm", datastore: "ds1", memoryBytes: 64 * Self.mib)
        try configuration.checkStored()
        var huge = configuration
        huge.vms["u2"] = .init(name: "big", datastore: "ds1", memoryBytes: .max)
        #expect(throws: AgentError.self) { try huge.checkStored() }
        var generation = configuration
        generation.generation = .max
        #expect(throws: AgentError.self) { try generation.checkStored() }
        var members = configuration
        members.members = []
        #expect(throws: AgentError.self) { try members.checkStored() }
        var future = configuration
        future.format = 2
        #expect(throws: AgentError.self) { try future.checkStored() }
        let status = HAHostStatus(host: "h1", hostUUID: "x", updatedWallNanoseconds: 0, capacityMemoryBytes: .max, usedMemoryBytes: 0,
                                  cpuCount: 2, maintenance: false, running: [])
        #expect(throws: AgentError.self) { try status.checkStored() }
        // The JSON keeps every field (format 1, docs/HA.md).
        let decoded = try JSONDecoder().decode(HAConfiguration.self, from: JSONEncoder().encode(configuration))
        #expect(decoded == configuration)
    }

    /// Client checks: members distinct, failures to tolerate below the member count.
    @Test func configurationChecksNameTheField() {
        var configuration = HAConfiguration(cluster: "lab", members: ["h1", "h1"])
        #expect((#expect(throws: AgentError.self) { try configuration.validate() })?.field == "members")
        configuration.members = ["h1", "h2"]
        configuration.settings.failuresToTolerate = 2
        #expect((#expect(throws: AgentError.self) { try configuration.validate() })?.field == "settings.failuresToTolerate")
        configuration.settings.failuresToTolerate = 1
        configuration.settings.monitoringTimeoutSeconds = 0
        #expect((#expect(throws: AgentError.self) { try configuration.validate() })?.field == "settings.monitoringTimeoutSeconds")
    }
}
