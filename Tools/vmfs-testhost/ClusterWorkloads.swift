import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// Increments an 8-byte counter in a shared file under the file's exclusive lock, N times.
struct Counter: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "counter")

    @OptionGroup var host: HostIdentityOptions
    @Option var file: String = "counter"
    @Option var increments = 100
    @Option(help: "Append one line per exclusive hold to this file: host, acquired and released (CLOCK_MONOTONIC ns).")
    var history: String?
    @Argument var device: String

    func run() throws {
        var options = host.mountOptions()
        options.lockWaitMs = max(options.lockWaitMs, 120_000)
        let volume = try Volume.mount(path: device, options: options)
        let log = try history.map { try EventLog(path: $0) }
        say("READY")
        var latencies: [UInt64] = []
        var last: UInt64 = 0
        for _ in 0..<increments {
            let start = monotonicNanoseconds()
            let handle = try volume.open(file, access: .readWrite)
            let acquired = monotonicNanoseconds()
            let bytes = try handle.read(count: 8, at: 0)
            var value: UInt64 = 0
            for (i, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
            value += 1
            last = value
            try handle.write(bytes: (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }, at: 0)
            // The hold is over once close starts writing the lock record free; recorded only
            // after the increment landed, so every line is a hold that changed the counter.
            let released = monotonicNanoseconds()
            try handle.close()
            log?.append("HOLD \(host.hostID ?? "-") \(acquired) \(released) \(value)")
            latencies.append(acquired - start)
        }
        try volume.unmount()
        latencies.sort()
        let median = latencies.isEmpty ? 0 : latencies[latencies.count / 2]
        let p99 = latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        say("FINISHED median_acquire_us=\(median / 1000) p99_acquire_us=\(p99 / 1000) last_value=\(last)")
    }
}

/// Creates a file and writes SIZE bytes of a pattern seeded by its name, then verifies them.
struct AllocationWriter: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "alloc-writer")

    @OptionGroup var host: HostIdentityOptions
    @Option var file: String
    @Option var size: String = "64M"
    @Option(name: .customLong("chunk")) var chunk: String = "256K"
    @Argument var device: String

    func run() throws {
        guard let total = parseSize(size), let piece = parseSize(chunk) else { throw ValidationError("bad size") }
        let volume = try Volume.mount(path: device, options: host.mountOptions())
        say("READY")
        let handle = try volume.create(file, access: .readWrite)
        var offset: UInt64 = 0
        var seed: UInt64 = 1
        for byte in file.utf8 { seed = seed &* 31 &+ UInt64(byte) }
        while offset < total {
            let count = Int(min(piece, total - offset))
            try handle.write(bytes: patternBytes(count, seed: seed &+ offset), at: offset)
            offset += UInt64(count)
        }
        try handle.sync()
        offset = 0
        while offset < total {
            let count = Int(min(piece, total - offset))
            guard try handle.read(count: count, at: offset) == patternBytes(count, seed: seed &+ offset) else {
                throw VMFSError(.corrupt, "read-back mismatch in \(file) at \(offset)")
            }
            offset += UInt64(count)
        }
        try handle.close()
        try volume.unmount()
        say("FINISHED")
    }
}

/// Holds a file open read-write and writes a sequence number into it every interval, reporting
/// what happens; used to kill (SIGKILL) or freeze (SIGSTOP) a lock holder.
struct Hold: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hold")

    @OptionGroup var host: HostIdentityOptions
    @Option var file: String
    @Option(name: .customLong("interval-ms")) var intervalMs: UInt32 = 20
    @Flag(help: "Create the file first.") var create = false
    @Option(name: .customLong("raw-write-offset"),
            help: "Also write a sector straight to the device at this byte offset every interval, past the volume's own fencing: the writes a frozen host still has queued in its kernel or the network.")
    var rawWriteOffset: UInt64?
    @Argument var device: String

    func run() throws {
        let volume = try Volume.mount(path: device, options: host.mountOptions())
        let handle = create ? try volume.create(file, access: .readWrite) : try volume.open(file, access: .readWrite)
        if create { try handle.sync() }
        say("READY slot=\(volume.membership?.slot ?? -1)")
        if let rawWriteOffset {
            QueuedWriter(device: volume.device, offset: rawWriteOffset, label: host.hostID ?? "-", intervalMs: intervalMs).start()
        }
        var sequence: UInt64 = 0
        var lost = false
        while true {
            sequence += 1
            let bytes = Array("holder \(host.hostID ?? "") seq \(sequence)\n".utf8)
            do {
                try handle.write(bytes: bytes, at: 0)
                try handle.sync()
                if sequence % 10 == 0 { say("WROTE \(sequence)") }
            } catch {
                if !lost {
                    lost = true
                    say("LOST \(error.code) \(error.message)")
                }
                if let membership = volume.membership, volume.eventLog.contains(where: { $0.hasPrefix("rejoined") }) {
                    say("REJOINED slot=\(membership.slot)")
                    // A sane state: the old handle stays dead; new work would open afresh.
                    while true { Thread.sleep(forTimeInterval: 1) }
                }
            }
            Thread.sleep(forTimeInterval: Double(intervalMs) / 1000)
        }
    }
}

/// Measures lock acquire+release latency and its I/O cost.
struct LockBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lock-bench")

    @OptionGroup var host: HostIdentityOptions
    @Option var file: String = "lockbench"
    @Option var iterations = 2000
    @Argument var device: String

    func run() throws {
        let volume = try Volume.mount(path: device, options: host.mountOptions())
        if (try? volume.status(of: file)) == nil { try volume.create(file) }
        var latencies: [UInt64] = []
        let before = volume.clusterStatistics.counts
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            let handle = try volume.open(file, access: .readWrite)
            try handle.close()
            latencies.append(DispatchTime.now().uptimeNanoseconds - start)
        }
        let after = volume.clusterStatistics.counts
        try volume.unmount()
        latencies.sort()
        let reads = Double(after.sectorReads - before.sectorReads) / Double(iterations)
        let updates = Double(after.atomicUpdates - before.atomicUpdates) / Double(iterations)
        say("RESULT median_us=\(latencies[latencies.count / 2] / 1000) p99_us=\(latencies[latencies.count * 99 / 100] / 1000) "
            + "reads_per_cycle=\(reads) atomic_updates_per_cycle=\(updates)")
    }
}

/// Writes a numbered sector straight to the device in a loop, reporting `RAWOK n` for every
/// tenth write that the storage took, until the storage refuses one (`RAWFAIL n <error>`): the
/// writes of one membership that were queued below the volume's own fencing. (After a rejoin the
/// host is a new member; its later writes are not the old membership's.)
struct QueuedWriter: Sendable {
    let device: any BlockDevice
    let offset: UInt64
    let label: String
    let intervalMs: UInt32

    func start() {
        Thread.detachNewThread {
            var sequence: UInt64 = 0
            while true {
                sequence += 1
                var sector = Array("RAW \(label) seq \(sequence)\n".utf8)
                sector += [UInt8](repeating: 0, count: 4096 - sector.count)
                do throws(VMFSError) {
                    try device.write(bytes: sector, at: offset)
                    if sequence % 10 == 0 { say("RAWOK \(sequence)") }
                } catch {
                    say("RAWFAIL \(sequence) \(error.code) \(error.message)")
                    return
                }
                Thread.sleep(forTimeInterval: Double(intervalMs) / 1000)
            }
        }
    }
}

/// Prints the LUN's persistent-reservation state and each slot's key (`vmfs info`/`hosts` without
/// the agent client), for the fencing benchmark and debugging.
struct FenceStatus: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fence-status")

    @Argument var device: String

    func run() throws {
        let inspector = try VolumeInspector(path: device)
        let coordination = inspector.coordination()
        say("RESERVATION \(coordination.reservation ?? "none") KEYS \((coordination.registeredKeys ?? []).joined(separator: ","))")
        for host in try inspector.hosts(observeMilliseconds: 0) where host.state != "free" {
            say("SLOT \(host.slot) \(host.state) \(host.hostName) key=\(host.fencingKey ?? "-") registered=\(host.registered.map(String.init) ?? "-")")
        }
    }
}
