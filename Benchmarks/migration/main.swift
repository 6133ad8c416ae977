import ArgumentParser
import Foundation
import Hypervisor
import LiveMigration
import SystemSupport

/// `migration-bench`: live migrations of a running memory-generations guest between two machines
/// of this process over authenticated TCP streams on the loopback interface (what two VMMs do once
/// their agents connected them). One line per migration, then a summary. A benchmark, not a test:
/// `Benchmarks/migration/bench-migration.sh` runs the matrix of the issue.
struct MigrationBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migration-bench", abstract: "Measure live-migration downtime, total time and bytes sent (benchmark, not a test).")

    @Option(help: "The test guest ELF (Tools/scripts/build-guest.sh builds it).") var image: String
    @Option(name: .customLong("memory-mib"), help: "Guest RAM in MiB (multiple of 2).") var memoryMiB: UInt64 = 256
    @Option(name: .customLong("dirty-mbps"), help: "How fast the guest dirties memory, MB/s (0: it writes its working set once, then idles).") var dirtyMBps: UInt64 = 0
    @Option(name: .customLong("working-set-mib"), help: "The guest's working set in MiB (default: a quarter of its RAM).") var workingSetMiB: UInt64?
    @Option(help: "Migrations back and forth.") var migrations: Int = 10
    @Option(help: "TCP streams.") var streams: Int = 2
    @Option(help: "Downtime budget, ms.") var budgetMs: UInt64 = 50
    @Option(name: .customLong("link-mbps"), help: "Link cap in MB/s (0: none).") var linkMBps: UInt64 = 0
    @Flag(help: "No post-copy (fail rather than switch).") var noPostCopy = false
    @Option(name: .customLong("settle-ms"), help: "Pause between migrations, so the guest's writer is back at its rate.") var settleMs: UInt32 = 1000

    func run() throws {
        let workingSet = (workingSetMiB ?? memoryMiB / 4) << 20
        let rate = dirtyMBps * 1_000_000
        // Writer on vCPU 0, the 1 ms gap probe on vCPU 1. Without a dirty rate the writer writes its
        // pages once (one pass) and then only watches.
        func configuration(_ console: any ConsoleSink) -> VirtualMachineConfiguration {
            VirtualMachineConfiguration(
                vcpuCount: 2, memorySize: memoryMiB << 20, disks: [],
                bootSource: .testGuest(TestGuestConfiguration(imagePath: image, workload: .memoryGenerations,
                                                              arguments: [workingSet, rate, rate == 0 ? 1 : 0, 1, 0, 0x5eed])),
                console: console)
        }
        var console = CapturingConsole()
        var machine = try VirtualMachine(configuration: configuration(console))
        var running = MachineRun(machine)
        guard console.wait(timeout: 60, until: { rate == 0 ? $0.contains("wrote its last pass") : $0.contains("memgen: 1 writers") }) else {
            throw ValidationError("the guest did not start its workload:\n\(console.text)")
        }
        Thread.sleep(forTimeInterval: 0.5)
        let options = MigrationOptions(downtimeBudgetMilliseconds: budgetMs, streams: streams,
                                       maximumBandwidthBytesPerSecond: linkMBps * 1_000_000, postCopy: !noPostCopy)
        print("# memory \(memoryMiB) MiB, working set \(workingSet >> 20) MiB, dirty rate \(dirtyMBps) MB/s, \(streams) streams, budget \(budgetMs) ms")
        print("migration\tdowntime_agent_ms\tguest_gap_ms\ttotal_ms\trounds\tpages_per_round\tsent_MiB\tsent_per_RAM\tsent_per_nonzero\tlink_MBps\tdirty_MBps\tthrottle\tpostcopy")
        var agentDowntimes: [Double] = []
        var guestGaps: [Double] = []
        var totals: [Double] = []
        for number in 1...migrations {
            if number > 1 { usleep(settleMs * 1000) }
            let nextConsole = CapturingConsole()
            let target = try VirtualMachine.restorable(configuration: configuration(nextConsole))
            let (sending, receiving) = try LoopbackStreams.make(streams)
            let destination = MigrationDestination(machine: target, streams: receiving, vmUUID: "bench")
            let received = Box<Result<VirtualMachine, MigrationError>?>(nil)
            let receiver = try NativeThread(name: "bench-receive") {
                do throws(MigrationError) { received.value = .success(try destination.receive()) } catch { received.value = .failure(error) }
            }
            let reports = Box<[MigrationProgress]>([])
            let source = MigrationSource(machine: machine, streams: sending, options: options, vmUUID: "bench") { reports.value.append($0) }
            let started = MonotonicClock.nanoseconds
            let ready = try source.run()
            receiver.join()
            guard case .success(let restored)? = received.value else { throw ValidationError("destination: \(String(describing: received.value))") }
            try destination.startPostCopy()
            let resumedWall = MonotonicClock.wallNanoseconds
            let nextRun = MachineRun(restored)
            try source.finishAfterHandoff()
            if ready.postCopy { _ = destination.waitForPostCopy() }
            let finished = MonotonicClock.nanoseconds
            destination.close()
            machine.requestStop()
            _ = running.wait()

            let epoch = number
            let gapLine = "gapprobe: epoch \(epoch) largest gap "
            _ = nextConsole.wait(timeout: 10) { $0.contains(gapLine) }
            let gap = nextConsole.lines.first { $0.contains(gapLine) }.flatMap { line in
                Double(line.components(separatedBy: gapLine).last?.split(separator: " ").first ?? "")
            }.map { $0 / 1000 }
            if nextConsole.text.contains("is wrong") || nextRun.reason != nil {
                throw ValidationError("the guest failed its check after migration \(number):\n\(nextConsole.text)")
            }
            let progress = reports.value
            var perRound: [UInt64] = []
            var previous: UInt64 = 0
            for report in progress where report.phase == .preCopy || report.phase == .stopAndCopy {
                let pages = report.dataPages + report.zeroPages
                if pages > previous { perRound.append(pages - previous) }
                previous = max(previous, pages)
            }
            let firstRoundData = progress.first { $0.round == 0 && $0.dataPages > 0 }?.dataPages ?? 1
            let sent = Double(sending.reduce(0) { $0 + $1.bytesSent })
            let total = Double(finished - started) / 1e6
            let downtime = Double(resumedWall - ready.pausedWallNanoseconds) / 1e6
            let last = progress.last ?? MigrationProgress()
            let dirtyRates = progress.map(\.dirtyRateBytesPerSecond)
            agentDowntimes.append(downtime)
            if let gap { guestGaps.append(gap) }
            totals.append(total)
            print([String(number), f(downtime), gap.map { f($0) } ?? "-", f(total), String(last.round + 1),
                   perRound.map(String.init).joined(separator: ","), f(sent / 1_048_576), f(sent / Double(memoryMiB << 20), 3),
                   f(sent / Double(firstRoundData * 4096), 3), f(sent / (total / 1000) / 1e6), f(Double(dirtyRates.max() ?? 0) / 1e6),
                   String(progress.map(\.throttlePercent).max() ?? 0), ready.postCopy ? "yes" : "no"].joined(separator: "\t"))
            machine = restored
            running = nextRun
            console = nextConsole
        }
        print("# downtime (agent, pause→resume) ms: median \(f(percentile(agentDowntimes, 0.5))) p99 \(f(percentile(agentDowntimes, 0.99))) max \(f(agentDowntimes.max() ?? 0))")
        print("# downtime (guest, largest gap in its 1 ms loop) ms: median \(f(percentile(guestGaps, 0.5))) p99 \(f(percentile(guestGaps, 0.99))) max \(f(guestGaps.max() ?? 0))")
        print("# total migration time ms: median \(f(percentile(totals, 0.5))) max \(f(totals.max() ?? 0))")
        machine.requestStop()
        _ = running.wait()
    }

    func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

    /// Nearest-rank percentile (with few samples, p99 is the maximum).
    func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
    }
}

/// A machine running on a thread of its own.
final class MachineRun: @unchecked Sendable {
    private let result = Box<PowerOffReason?>(nil)
    private let lock = NSLock()
    private var thread: NativeThread?

    init(_ machine: VirtualMachine) {
        thread = try? NativeThread(name: "bench-vm") { [result, lock] in
            let reason = (try? machine.run(timeLimit: nil)) ?? .stopRequested
            lock.lock()
            result.value = reason
            lock.unlock()
        }
    }

    /// The power-off reason once it stopped (nil while it runs).
    var reason: PowerOffReason? {
        lock.lock()
        defer { lock.unlock() }
        return result.value
    }

    func wait() -> PowerOffReason? {
        thread?.join()
        return reason
    }
}

MigrationBench.main()
