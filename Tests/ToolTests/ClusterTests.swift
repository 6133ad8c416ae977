import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport

/// Stretches every interval of these tests by `VMFS_TEST_TIMING_SCALE` (default 1): under a
/// sanitizer (Tools/scripts/sanitize.sh) a host runs several times slower, and one that cannot
/// renew its heartbeat in time fences itself, as it must.
private let timingScale = UInt32(ProcessInfo.processInfo.environment["VMFS_TEST_TIMING_SCALE"] ?? "").map { max($0, 1) } ?? 1

private let fastTiming = HeartbeatTiming(renewIntervalMs: 100 * timingScale, deadIntervalMs: 800 * timingScale,
                                         ioTimeoutMs: 300 * timingScale)

/// `seconds` stretched like the intervals.
private func scaled(_ seconds: Double) -> Double { seconds * Double(timingScale) }

private let fastHostFlags = ["--heartbeat-ms", "\(fastTiming.renewIntervalMs)", "--dead-ms", "\(fastTiming.deadIntervalMs)",
                             "--io-timeout-ms", "\(fastTiming.ioTimeoutMs)"]

private func fastOptions(_ name: String, lockWaitMs: UInt32 = 0) -> MountOptions {
    var options = MountOptions(host: HostIdentity.local(override: name))
    options.timing = fastTiming
    options.lockWaitMs = lockWaitMs * timingScale
    options.commitIntervalMs = 200 * timingScale
    return options
}

/// A formatted volume on an image file, or on a loop device backed by one.
private final class SharedLUN {
    let scratch = Scratch("cluster")
    let path: String
    private var loop: String?

    init(loopDevice: Bool, size: String = "4G") throws {
        let image = scratch.file("lun.img")
        FileManager.default.createFile(atPath: image, contents: nil)
        guard let bytes = UInt64(size.dropLast()).map({ $0 << 30 }) else { throw VMFSError(.invalidArgument, "size") }
        truncate(image, off_t(bytes))
        if loopDevice {
            let device = try attachLoop(image)
            loop = device
            path = device
        } else {
            path = image
        }
        let made = try runTool("mkfs.vmfs", ["--journal-size", "1M", path] + fastMkfsFlags)
        guard made.status == 0 else { throw VMFSError(.io, "mkfs failed: \(made.output)") }
    }

    deinit { if let loop { detachLoop(loop) } }
}

@Suite("Clustered access: many host processes on one volume", .serialized)
struct ClusterTests {
    @Test(arguments: [false, true])
    func eightHostsIncrementACounterWithoutLosingUpdates(loopDevice: Bool) throws {
        if loopDevice && !isRoot { try Test.cancel("loop devices need root") }
        let lun = try SharedLUN(loopDevice: loopDevice)
        let setup = try Volume.mount(path: lun.path, options: fastOptions("setup"))
        let counter = try setup.create("counter", access: .readWrite)
        try counter.write(bytes: [UInt8](repeating: 0, count: 8), at: 0)
        try counter.close()
        try setup.unmount()
        let hosts = 8
        let increments = 100
        let workers = try (0..<hosts).map { index in
            try LiveProcess("vmfs-testhost", ["counter", lun.path, "--host-id", "counter-\(index)", "--increments", "\(increments)"] + fastHostFlags)
        }
        for worker in workers {
            #expect(worker.waitForLine(startingWith: "FINISHED", timeout: 300) != nil, "\(worker.output.joined(separator: "\n"))")
            worker.wait()
            #expect(worker.process.terminationStatus == 0)
        }
        let check = try Volume.mount(path: lun.path, options: fastOptions("check"))
        let bytes = try check.open("counter").read(count: 8, at: 0)
        var value: UInt64 = 0
        for (i, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        try check.unmount()
        #expect(value == UInt64(hosts * increments), "lost updates: counter is \(value), expected \(hosts * increments)")
        let fsck = try runTool("fsck.vmfs", ["-n", lun.path])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    @Test(arguments: [false, true])
    func eightHostsAllocateInParallelWithoutSharingBlocks(loopDevice: Bool) throws {
        if loopDevice && !isRoot { try Test.cancel("loop devices need root") }
        let lun = try SharedLUN(loopDevice: loopDevice)
        let workers = try (0..<8).map { index in
            try LiveProcess("vmfs-testhost", ["alloc-writer", lun.path, "--host-id", "writer-\(index)", "--file", "disk-\(index).vmdk",
                                              "--size", "24M", "--chunk", "192K"] + fastHostFlags)
        }
        for worker in workers {
            #expect(worker.waitForLine(startingWith: "FINISHED", timeout: 300) != nil, "\(worker.output.joined(separator: "\n"))")
            worker.wait()
            #expect(worker.process.terminationStatus == 0)
        }
        let fsck = try runTool("fsck.vmfs", ["-n", "--json", lun.path])
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(fsck.stdout.contains("\"usedBlocks\" : 192"), "\(fsck.stdout)")
        #expect(fsck.stdout.contains("\"files\" : 8"))
    }

    @Test func killedLockHolderIsRecoveredAndItsLocksTaken() throws {
        let lun = try SharedLUN(loopDevice: false)
        let holder = try LiveProcess("vmfs-testhost", ["hold", lun.path, "--host-id", "holder", "--file", "vm.vmdk", "--create"] + fastHostFlags)
        #expect(holder.waitForLine(startingWith: "READY", timeout: 60) != nil)
        #expect(holder.waitForLine(startingWith: "WROTE 20", timeout: 60) != nil)
        let survivor = try Volume.mount(path: lun.path, options: fastOptions("survivor"))
        do {
            _ = try survivor.open("vm.vmdk", access: .readWrite)
            Issue.record("the file must be locked by the holder")
        } catch {
            #expect(error.code == .busy)
            #expect(error.message.contains("holder"), "\(error.message)")
            #expect(error.message.contains("since"), "\(error.message)")
        }
        holder.kill(SIGKILL)
        holder.wait()
        let lastReported = holder.output.compactMap { line -> Int? in
            line.hasPrefix("WROTE ") ? Int(line.dropFirst(6)) : nil
        }.max() ?? 0
        let started = Date()
        var waiting = fastOptions("survivor-2", lockWaitMs: 10_000)
        waiting.automaticRecovery = true
        let taker = try Volume.mount(path: lun.path, options: waiting)
        let handle = try taker.open("vm.vmdk", access: .readWrite)
        let took = Date().timeIntervalSince(started)
        // D = 0.8 s after the last observed change, plus one heartbeat and the replay.
        #expect(took < scaled(0.8 + 0.1 + 2.0), "taking a dead host's lock took \(took) s")
        let text = String(decoding: try handle.read(count: 64, at: 0), as: UTF8.self)
        let sequence = Int(text.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "") ?? 0
        #expect(sequence >= lastReported, "committed writes of the dead host are missing: found \(sequence), it reported \(lastReported)")
        try handle.close()
        try taker.unmount()
        try survivor.unmount()
        let fsck = try runTool("fsck.vmfs", ["-n", lun.path])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    @Test func twoSurvivorsRacingToRecoverOneDeadHostReplayOnce() throws {
        let lun = try SharedLUN(loopDevice: false)
        let holder = try LiveProcess("vmfs-testhost", ["hold", lun.path, "--host-id", "victim", "--file", "x", "--create"] + fastHostFlags)
        #expect(holder.waitForLine(startingWith: "WROTE 10", timeout: 60) != nil)
        holder.kill(SIGKILL)
        holder.wait()
        var a = fastOptions("racer-a")
        a.automaticRecovery = false
        var b = fastOptions("racer-b")
        b.automaticRecovery = false
        let first = try Volume.mount(path: lun.path, options: a)
        let second = try Volume.mount(path: lun.path, options: b)
        let slot = try first.hosts().first { $0.hostName == "victim" }!.slot
        Thread.sleep(forTimeInterval: scaled(1.0))  // past D: both see the victim dead
        let results = ResultBox()
        let group = DispatchGroup()
        for volume in [first, second] {
            group.enter()
            DispatchQueue.global().async {
                let replayed = (try? volume.recover(slot: slot)) ?? false
                results.add(replayed)
                group.leave()
            }
        }
        group.wait()
        #expect(results.values.filter { $0 }.count == 1, "exactly one survivor must replay: \(results.values)")
        #expect(first.recoveries.count + second.recoveries.count == 1)
        try first.unmount()
        try second.unmount()
        #expect(try runTool("fsck.vmfs", ["-n", lun.path]).status == 0)
    }

    @Test func frozenHolderResumingAfterItsLockWasBrokenDoesNotWrite() throws {
        let lun = try SharedLUN(loopDevice: false)
        let holder = try LiveProcess("vmfs-testhost", ["hold", lun.path, "--host-id", "sleeper", "--file", "vm.vmdk", "--create"] + fastHostFlags)
        #expect(holder.waitForLine(startingWith: "WROTE 10", timeout: 60) != nil)
        // Freeze the holder outside the emulated atomic update of its heartbeat slot: a real
        // COMPARE AND WRITE is one SCSI command and cannot be frozen half-way; the emulation's
        // byte-range lock can, and would then block everyone's updates of that slot until SIGCONT.
        let slot = try Int(#require(holder.output.first { $0.hasPrefix("READY slot=") }).dropFirst("READY slot=".count))!
        let probe = try FileBlockDevice(path: lun.path, readOnly: true)
        let slotAddress = try Volume.readHeader(probe).layout.heartbeatOffset + UInt64(slot * 4096)
        for _ in 0..<100 {
            holder.kill(SIGSTOP)
            Thread.sleep(forTimeInterval: 0.01)
            if !probe.isRangeLockedElsewhere(offset: slotAddress, length: 4096) { break }
            holder.kill(SIGCONT)
            Thread.sleep(forTimeInterval: 0.003)
        }
        Thread.sleep(forTimeInterval: scaled(1.2))  // past D = 0.8 s
        let taker = try Volume.mount(path: lun.path, options: fastOptions("taker", lockWaitMs: 10_000))
        let handle = try taker.open("vm.vmdk", access: .readWrite)
        let mine = Array("taken over by another host\n".utf8)
        try handle.write(bytes: mine + [UInt8](repeating: 0, count: 64), at: 0)
        try handle.sync()
        holder.kill(SIGCONT)
        #expect(holder.waitForLine(startingWith: "LOST", timeout: scaled(10)) != nil, "\(holder.output.joined(separator: "\n"))")
        #expect(holder.waitForLine(startingWith: "REJOINED", timeout: scaled(10)) != nil, "\(holder.output.joined(separator: "\n"))")
        Thread.sleep(forTimeInterval: scaled(0.3))
        #expect(try handle.read(count: mine.count, at: 0) == mine, "the resumed host wrote to the file it lost")
        try handle.close()
        holder.kill(SIGKILL)
        holder.wait()
        _ = try taker.recoverDeadHosts(waitMilliseconds: 3000 * UInt64(timingScale))
        try taker.unmount()
        let fsck = try runTool("fsck.vmfs", ["-n", lun.path])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    @Test func adminViewsShowHostsAndLocks() throws {
        let lun = try SharedLUN(loopDevice: false)
        let holder = try LiveProcess("vmfs-testhost", ["hold", lun.path, "--host-id", "admin-view", "--file", "held.vmdk", "--create"] + fastHostFlags)
        #expect(holder.waitForLine(startingWith: "WROTE", timeout: 60) != nil)
        let hosts = try runTool("vmfs", ["hosts", "--json", lun.path])
        #expect(hosts.status == 0)
        #expect(hosts.stdout.contains("\"hostName\" : \"admin-view\""))
        #expect(hosts.stdout.contains("\"liveness\" : \"alive\""), "\(hosts.stdout)")
        let locks = try runTool("vmfs", ["locks", "--json", lun.path])
        #expect(locks.stdout.contains("file 'held.vmdk'"), "\(locks.stdout)")
        #expect(locks.stdout.contains("\"mode\" : \"exclusive\""))
        let refused = try runTool("vmfs", ["break-lock", lun.path, "held.vmdk", "--host-id", "admin"] + fastHostFlags)
        #expect(refused.status != 0, "break-lock must refuse while the holder is alive: \(refused.output)")
        holder.kill(SIGKILL)
        holder.wait()
        let broken = try runTool("vmfs", ["break-lock", lun.path, "held.vmdk", "--host-id", "admin"] + fastHostFlags)
        #expect(broken.status == 0, "\(broken.output)")
        #expect(broken.stdout.contains("recovered dead host") || broken.stdout.contains("is free"), "\(broken.output)")
        let after = try runTool("vmfs", ["locks", "--json", lun.path])
        #expect(!after.stdout.contains("held.vmdk"), "\(after.stdout)")
        #expect(try runTool("fsck.vmfs", ["-n", lun.path]).status == 0)
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Bool] = []
    func add(_ value: Bool) { lock.lock(); stored.append(value); lock.unlock() }
    var values: [Bool] { lock.lock(); defer { lock.unlock() }; return stored }
}
