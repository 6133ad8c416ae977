import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// Sequential 1 MiB write and read, and 4 KiB random reads at queue depth 1, through the library.
struct CoreThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "core")

    @Option(help: "A formatted volume (image file or block device).") var volume: String
    @Option(help: "Bytes to write and read sequentially.") var size = "2G"
    @Option(name: .customLong("random-seconds")) var randomSeconds = 10.0

    func run() throws {
        guard let total = parseSize(size) else { throw ValidationError("bad --size") }
        let mounted = try Volume.mount(path: volume, options: MountOptions(host: HostIdentity.local(override: "bench")))
        defer { try? mounted.unmount() }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        for i in 0..<chunk { buffer[i] = UInt8(truncatingIfNeeded: i &* 31) }
        if (try? mounted.status(of: "bench.dat")) != nil { try mounted.remove("bench.dat") }
        let file = try mounted.create("bench.dat", access: .readWrite)
        // Sequential write into new (thin) space: allocation and journal included; one fsync at the end.
        var start = now()
        var offset: UInt64 = 0
        while offset < total {
            try file.write(UnsafeRawBufferPointer(buffer), at: offset)
            offset += UInt64(chunk)
        }
        try file.sync()
        var seconds = Double(now() - start) / 1e9
        result("seq-write", [("MBps", format(Double(total) / seconds / 1e6)), ("seconds", format(seconds))])
        // Overwrite: blocks already allocated, data straight to the device.
        start = now()
        offset = 0
        while offset < total {
            try file.write(UnsafeRawBufferPointer(buffer), at: offset)
            offset += UInt64(chunk)
        }
        try file.sync()
        seconds = Double(now() - start) / 1e9
        result("seq-overwrite", [("MBps", format(Double(total) / seconds / 1e6)), ("seconds", format(seconds))])
        start = now()
        offset = 0
        while offset < total {
            _ = try file.read(into: buffer, at: offset)
            offset += UInt64(chunk)
        }
        seconds = Double(now() - start) / 1e9
        result("seq-read", [("MBps", format(Double(total) / seconds / 1e6)), ("seconds", format(seconds))])
        let small = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<4096])
        var random = SystemRandomNumberGenerator()
        let pages = total / 4096
        var latencies: [UInt64] = []
        let deadline = now() + UInt64(randomSeconds * 1e9)
        start = now()
        while now() < deadline {
            let page = UInt64.random(in: 0..<pages, using: &random)
            let t = now()
            _ = try file.read(into: small, at: page * 4096)
            latencies.append(now() - t)
        }
        seconds = Double(now() - start) / 1e9
        latencies.sort()
        result("rand-read-4k", [("IOPS", format(Double(latencies.count) / seconds)), ("MBps", format(Double(latencies.count) * 4096 / seconds / 1e6)),
                                ("p50_us", "\(percentile(latencies, 50) / 1000)"), ("p99_us", "\(percentile(latencies, 99) / 1000)")])
        try file.close()
        try mounted.remove("bench.dat")
    }
}
