import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// Uncontended lock acquire + release through opening and closing a file read-write.
struct LockLatency: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "locks")

    @Option var volume: String
    @Option var iterations = 5000
    @OptionGroup var host: HostIdentityOptions

    func run() throws {
        let mounted = try Volume.mount(path: volume, options: host.mountOptions())
        defer { try? mounted.unmount() }
        if (try? mounted.status(of: "lock-bench")) == nil { try mounted.create("lock-bench") }
        for _ in 0..<100 { try mounted.open("lock-bench", access: .readWrite).close() }  // warm up
        var latencies: [UInt64] = []
        let before = mounted.clusterStatistics.counts
        let renewalsBefore = mounted.clusterStatistics.counts
        for _ in 0..<iterations {
            let t = now()
            let handle = try mounted.open("lock-bench", access: .readWrite)
            try handle.close()
            latencies.append(now() - t)
        }
        let after = mounted.clusterStatistics.counts
        _ = renewalsBefore
        latencies.sort()
        let reads = Double(after.sectorReads - before.sectorReads) / Double(iterations)
        let updates = Double(after.atomicUpdates - before.atomicUpdates) / Double(iterations)
        result("lock-cycle", [("median_us", format(Double(percentile(latencies, 50)) / 1000)),
                              ("p99_us", format(Double(percentile(latencies, 99)) / 1000)),
                              ("lock_reads_per_cycle", format(reads)), ("atomic_updates_per_cycle", format(updates))])
    }
}

/// Kills a host process (SIGKILL) after watching it, then reports when it is seen dead (against
/// D) and how long its recovery (journal replay, lock release) took.
struct DeathDetection: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detect")

    @Option var volume: String
    @Option(name: .customLong("victim"), help: "Host name of the host to kill.") var victim: String
    @Option(name: .customLong("victim-pid"), help: "Its process ID.") var victimPID: Int32
    @OptionGroup var host: HostIdentityOptions

    func run() throws {
        var options = host.mountOptions()
        options.automaticRecovery = false
        let mounted = try Volume.mount(path: volume, options: options)
        defer { try? mounted.unmount() }
        guard let slot = try mounted.hosts().first(where: { $0.hostName == victim && $0.state == "live" })?.slot else {
            throw ValidationError("no live host named \(victim)")
        }
        Thread.sleep(forTimeInterval: Double(mounted.timing!.renewIntervalMs) * 3 / 1000)
        kill(victimPID, SIGKILL)
        let killed = now()
        while true {
            if let info = try mounted.hosts().first(where: { $0.slot == slot }), info.liveness == "dead" { break }
            Thread.sleep(forTimeInterval: 0.005)
        }
        let detected = now()
        let recoveryStart = now()
        _ = try mounted.recover(slot: slot)
        let recovered = now()
        let timing = mounted.timing!
        result("dead-host", [("detect_ms", format(Double(detected - killed) / 1e6)),
                             ("D_ms", "\(timing.deadIntervalMs)"), ("H_ms", "\(timing.renewIntervalMs)"),
                             ("recovery_ms", format(Double(recovered - recoveryStart) / 1e6))])
    }
}
