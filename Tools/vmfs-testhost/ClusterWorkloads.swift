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
    @Argument var device: String

    func run() throws {
        var options = host.mountOptions()
        options.lockWaitMs = max(options.lockWaitMs, 120_000)
        let volume = try Volume.mount(path: device, options: options)
        say("READY")
        var latencies: [UInt64] = []
        for _ in 0..<increments {
            let start = DispatchTime.now().uptimeNanoseconds
            let handle = try volume.open(file, access: .readWrite)
            let acquired = DispatchTime.now().uptimeNanoseconds
            let bytes = try handle.read(count: 8, at: 0)
            var value: UInt64 = 0
            for (i, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
            value += 1
            try handle.write(bytes: (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }, at: 0)
            try handle.close()
            latencies.append(acquired - start)
        }
        try volume.unmount()
        latencies.sort()
        let median = latencies.isEmpty ? 0 : latencies[latencies.count / 2]
        let p99 = latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        say("FINISHED median_acquire_us=\(median / 1000) p99_acquire_us=\(p99 / 1000)")
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
    @Argument var device: String

    func run() throws {
        let volume = try Volume.mount(path: device, options: host.mountOptions())
        let handle = create ? try volume.create(file, access: .readWrite) : try volume.open(file, access: .readWrite)
        if create { try handle.sync() }
        say("READY slot=\(volume.membership?.slot ?? -1)")
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
