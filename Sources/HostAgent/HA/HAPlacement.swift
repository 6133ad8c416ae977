/// Where to restart VMs that run nowhere: the same answer on every member that computes it.
///
/// VMs go in priority order (high first, then by name); each goes to the live member, not in
/// maintenance, with the most free memory that can hold it (ties by name). VMs that fit nowhere
/// are reported, lowest priority last.
public enum HAPlacement {
    public struct Member: Sendable, Equatable {
        public var name: String
        public var freeMemoryBytes: UInt64

        public init(name: String, freeMemoryBytes: UInt64) {
            self.name = name
            self.freeMemoryBytes = freeMemoryBytes
        }
    }

    public struct Candidate: Sendable, Equatable {
        public var uuid: String
        public var name: String
        public var priority: HAConfiguration.Priority
        public var memoryBytes: UInt64

        public init(uuid: String, name: String, priority: HAConfiguration.Priority, memoryBytes: UInt64) {
            self.uuid = uuid
            self.name = name
            self.priority = priority
            self.memoryBytes = memoryBytes
        }
    }

    /// (VM UUID → member name) for the VMs that fit, and the UUIDs of those that fit nowhere.
    public static func plan(_ candidates: [Candidate], on members: [Member]) -> (assignments: [String: String], unplaced: [String]) {
        var free = members
        var assignments: [String: String] = [:]
        var unplaced: [String] = []
        let ordered = candidates.sorted { ($0.priority, $0.name, $0.uuid) < ($1.priority, $1.name, $1.uuid) }
        for candidate in ordered {
            let fitting = free.indices.filter { free[$0].freeMemoryBytes >= candidate.memoryBytes }
            guard let best = fitting.max(by: { (free[$0].freeMemoryBytes, free[$1].name) < (free[$1].freeMemoryBytes, free[$0].name) }) else {
                unplaced.append(candidate.uuid)
                continue
            }
            assignments[candidate.uuid] = free[best].name
            free[best].freeMemoryBytes -= candidate.memoryBytes
        }
        return (assignments, unplaced)
    }

    /// Admission control: can every protected VM still run after the `failures` members with the
    /// most capacity fail? `running` is the memory of the protected VMs that run (or would, with
    /// the one being powered on).
    public static func failoverCapacity(capacities: [UInt64], protectedMemory: UInt64, failures: Int)
        -> (available: UInt64, required: UInt64, ok: Bool) {
        let survivors = capacities.sorted().dropLast(max(0, failures))
        let available = survivors.reduce(0, +)
        return (available, protectedMemory, failures < capacities.count && protectedMemory <= available)
    }
}
