import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

/// The failover timeline benchmark behind `Benchmarks/ha/bench-failover.sh`; not part of the
/// suite (it runs only when `HA_BENCH` is set). For every dead interval D in `HA_BENCH_DEAD_MS`
/// and every count N in `HA_BENCH_VMS`: three members, N protected idle VMs on the first, which
/// is killed (`kill -9` of its agent and VMMs); the survivors' failover record gives the timeline
/// failure → detected → locks recovered → each VM's first guest instruction.
@Suite("HA failover benchmark", .serialized, .enabled(if: canRunCluster && ProcessInfo.processInfo.environment["HA_BENCH"] != nil))
struct HAFailoverBenchmark {
    struct Timeline {
        var deadMs: Int
        var vms: Int
        var detected: Double
        var recovered: Double
        var firstInstructions: [Double]

        var line: String {
            let sorted = firstInstructions.sorted()
            let median = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
            return String(format: "D=%5d ms  VMs=%2d  detected %6.2f s  recovered %6.2f s  first instruction: first %6.2f s, median %6.2f s, last %6.2f s  (goal D+2 = %.0f s: %@)",
                          deadMs, vms, detected, recovered, sorted.first ?? .nan, median, sorted.last ?? .nan,
                          Double(deadMs) / 1000 + 2, (sorted.last ?? .infinity) <= Double(deadMs) / 1000 + 2 ? "met" : "missed")
        }
    }

    static func list(_ variable: String, default fallback: [Int]) -> [Int] {
        guard let text = ProcessInfo.processInfo.environment[variable] else { return fallback }
        return text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Heartbeat timing for a dead interval: VMware's H = 3 s, T = 8 s at D = 16 s and above,
    /// shorter D scaled down (H = D/8, T = 300 ms).
    static func timing(deadMs: Int) -> (heartbeatMs: Int, ioTimeoutMs: Int) {
        deadMs >= 16_000 ? (3000, 8000) : (max(deadMs / 8, 50), 300)
    }

    @Test func failoverTimeline() throws {
        var results: [Timeline] = []
        for deadMs in Self.list("HA_BENCH_DEAD_MS", default: [16_000, 2000]) {
            for count in Self.list("HA_BENCH_VMS", default: [1, 10, 30]) {
                let timeline = try Self.measure(deadMs: deadMs, vms: count)
                print("HA bench: \(timeline.line)")
                results.append(timeline)
            }
        }
        if let path = ProcessInfo.processInfo.environment["HA_BENCH_OUT"] {
            try (results.map(\.line).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    static func measure(deadMs: Int, vms count: Int) throws -> Timeline {
        let (heartbeatMs, ioTimeoutMs) = timing(deadMs: deadMs)
        let lab = try HALab(heartbeatMs: heartbeatMs, deadMs: deadMs, ioTimeoutMs: ioTimeoutMs)
        let victim = lab.hosts[0]
        let survivors = Array(lab.hosts.dropFirst())
        let names = (1...count).map { "bench\($0)" }
        for name in names {
            let on = try lab.createVM(name, on: victim, memory: "32M", workload: ["--workload", "idle"])
            guard on.status == 0 else { throw LabError("power-on \(name): \(on.output)") }
        }
        guard eventually(seconds: 60, { lab.allRunningOnce(names) }) else { throw LabError("VMs did not start: \(lab.placements(names))") }
        let crashed = Date()
        lab.crash(victim)
        guard eventually(seconds: Double(deadMs) / 1000 + 120, { lab.allRunningOnce(names, among: survivors) }) else {
            throw LabError("D=\(deadMs) N=\(count): not all VMs restarted: \(lab.placements(names, among: survivors))")
        }
        // Each restarting member appends its restarts to the record: wait until all are in.
        var record: [String: Any] = [:]
        let complete = eventually(seconds: 20) {
            let failovers = lab.haStatus(survivors[0])?["failovers"] as? [[String: Any]] ?? []
            guard let last = failovers.last(where: { $0["failedHost"] as? String == victim.name }) else { return false }
            record = last
            let restarts = last["restarts"] as? [[String: Any]] ?? []
            return last["recoveredAt"] != nil && restarts.count >= count && restarts.allSatisfy { $0["firstInstructionAt"] != nil }
        }
        guard complete else { throw LabError("D=\(deadMs) N=\(count): incomplete failover record \(record)") }
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        func since(_ value: Any?) -> Double {
            guard let text = value as? String, let date = parser.date(from: text) else { return .nan }
            return date.timeIntervalSince(crashed)
        }
        let restarts = record["restarts"] as? [[String: Any]] ?? []
        return Timeline(deadMs: deadMs, vms: count, detected: since(record["detectedAt"]), recovered: since(record["recoveredAt"]),
                        firstInstructions: restarts.map { since($0["firstInstructionAt"]) })
    }
}
