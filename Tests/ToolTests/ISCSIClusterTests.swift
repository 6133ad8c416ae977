import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport


private func iscsiOptions(_ name: String, lockWaitMs: UInt32 = 0) -> MountOptions {
    var options = MountOptions(host: HostIdentity.local(override: name))
    options.lockWaitMs = lockWaitMs
    options.commitIntervalMs = 200
    return options
}

/// A target of its own with one LUN formatted with the atomic update method `backend`: tgtd
/// for `scsi2` and `paxos`, istgt for `ats` (tgt does not execute COMPARE AND WRITE).
private final class FormattedLUN {
    /// The target process (kept running while the LUN is used).
    let server: AnyObject
    let url: String
    /// The LUN's backing file.
    let image: String
    let scratch: Scratch

    init(backend: String, fencing: String = "auto", size: UInt64 = 4 << 30) throws {
        if backend == "ats" {
            let istgt = try IstgtTarget(size: size)
            (server, url, image, scratch) = (istgt, istgt.url, istgt.image, istgt.scratch)
        } else {
            let tgt = try TgtTarget()
            let target = try tgt.addTarget(size: size)
            (server, url, image, scratch) = (tgt, tgt.url(target), target.images[0], tgt.scratch)
        }
        let made = try runTool("mkfs.vmfs", ["--journal-size", "1M", "--atomic-update", backend, "--fencing", fencing]
                                            + iscsiMkfsFlags + [url])
        guard made.status == 0 else { throw VMFSError(.io, "mkfs.vmfs --atomic-update \(backend) failed: \(made.output)") }
    }
}


private func counterValue(_ volume: Volume, _ name: String = "counter") throws -> UInt64 {
    let bytes = try volume.open(name).read(count: 8, at: 0)
    return bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
}

/// Eight host processes, each with its own iSCSI session to one tgt LUN: no file descriptor is
/// shared, so only the volume's atomic update method keeps them apart.
@Suite("iSCSI LUNs: host processes on one tgt LUN, per atomic update method", .serialized)
struct ISCSIClusterTests {
    static let backends = ["ats", "scsi2", "paxos"]

    @Test(arguments: backends)
    func eightHostsCountUnderSIGSTOPWithoutOverlappingHolds(backend: String) throws {
        try requireTarget()
        let lun = try FormattedLUN(backend: backend)
        let setup = try Volume.mount(path: lun.url, options: iscsiOptions("setup"))
        #expect(setup.header.atomicUpdate.name == backend)
        let counter = try setup.create("counter", access: .readWrite)
        try counter.write(bytes: [UInt8](repeating: 0, count: 8), at: 0)
        try counter.close()
        try setup.unmount()
        let hosts = 8
        let increments = 15
        let history = lun.scratch.file("history")
        let workers = try (0..<hosts).map { index in
            try LiveProcess("vmfs-testhost", ["counter", lun.url, "--host-id", "counter-\(index)", "--increments", "\(increments)",
                                              "--history", history])
        }
        // Freeze hosts at random points (holding the lock, mid-update, renewing) for less than D.
        let freezes = FreezeLoop(workers: workers)
        for worker in workers {
            #expect(worker.waitForLine(startingWith: "FINISHED", timeout: 400) != nil, "\(worker.output.joined(separator: "\n"))")
        }
        let frozen = freezes.stop()
        for worker in workers {
            worker.wait()
            #expect(worker.process.terminationStatus == 0)
        }
        let check = try Volume.mount(path: lun.url, options: iscsiOptions("check"))
        let value = try counterValue(check)
        try check.unmount()
        #expect(value == UInt64(hosts * increments), "lost updates with \(backend): counter is \(value)")
        let recorded = LockHistory(text: (try? String(contentsOfFile: history, encoding: .utf8)) ?? "")
        #expect(recorded.malformed.isEmpty, "\(recorded.malformed)")
        #expect(recorded.holds.count == hosts * increments)
        #expect(recorded.overlaps().isEmpty, "overlapping exclusive holds with \(backend): \(recorded.overlaps().prefix(3))")
        #expect(recorded.repeatedValues().isEmpty)
        #expect(frozen > 0, "no host was frozen")
        let fsck = try runTool("fsck.vmfs", ["-n", lun.url])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    @Test(arguments: backends)
    func eightHostsAllocateInParallelWithoutSharingBlocks(backend: String) throws {
        try requireTarget()
        let lun = try FormattedLUN(backend: backend)
        let workers = try (0..<8).map { index in
            try LiveProcess("vmfs-testhost", ["alloc-writer", lun.url, "--host-id", "writer-\(index)", "--file", "disk-\(index).vmdk",
                                              "--size", "8M", "--chunk", "256K"])
        }
        for worker in workers {
            #expect(worker.waitForLine(startingWith: "FINISHED", timeout: 400) != nil, "\(worker.output.joined(separator: "\n"))")
            worker.wait()
            #expect(worker.process.terminationStatus == 0)
        }
        let fsck = try runTool("fsck.vmfs", ["-n", "--json", lun.url])
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(fsck.stdout.contains("\"usedBlocks\" : 64"), "\(fsck.stdout)")
        #expect(fsck.stdout.contains("\"files\" : 8"))
    }

    @Test(arguments: backends)
    func killedLockHolderIsRecoveredAndItsLockTaken(backend: String) throws {
        try requireTarget()
        let lun = try FormattedLUN(backend: backend)
        let holder = try LiveProcess("vmfs-testhost", ["hold", lun.url, "--host-id", "holder", "--file", "vm.vmdk", "--create"])
        #expect(holder.waitForLine(startingWith: "WROTE 20", timeout: 120) != nil, "\(holder.output)")
        holder.kill(SIGKILL)
        holder.wait()
        let lastReported = holder.output.compactMap { $0.hasPrefix("WROTE ") ? Int($0.dropFirst(6)) : nil }.max() ?? 0
        var options = iscsiOptions("taker", lockWaitMs: 30_000)
        options.automaticRecovery = true
        let taker = try Volume.mount(path: lun.url, options: options)
        let handle = try taker.open("vm.vmdk", access: .readWrite)
        let text = String(decoding: try handle.read(count: 64, at: 0), as: UTF8.self)
        let sequence = Int(text.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "") ?? 0
        #expect(sequence >= lastReported, "committed writes of the dead host are missing: found \(sequence), it reported \(lastReported)")
        try handle.close()
        try taker.unmount()
        let fsck = try runTool("fsck.vmfs", ["-n", lun.url])
        #expect(fsck.status == 0, "\(fsck.output)")
    }
}

/// SIGSTOPs a random worker for 20–600 ms, again and again, until stopped.
private final class FreezeLoop: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var count = 0
    private let done = DispatchSemaphore(value: 0)

    init(workers: [LiveProcess]) {
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.3))
                // Only workers still running: the pid of one that exited may belong to another process now.
                guard let worker = workers.filter({ $0.process.isRunning }).randomElement() else { break }
                let pid = worker.process.processIdentifier
                kill(pid, SIGSTOP)
                Thread.sleep(forTimeInterval: Double.random(in: 0.02...0.6))
                kill(pid, SIGCONT)
                lock.withLock { count += 1 }
            }
            done.signal()
        }
    }

    /// Stops freezing (every worker is running again); returns how many freezes there were.
    func stop() -> Int {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { count }
    }
}
