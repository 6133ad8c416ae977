import Foundation
import Synchronization
import Testing
import HostAgent
import Hypervisor
import SystemSupport
import VMFSTestSupport
import VMXProtocol
import VMXRuntime

/// The disk channel between the agent (``DiskServer``) and a VMM (``RemoteDiskBackend``): rings in
/// shared memory, a data window and two doorbells, exercised in one process with the VMM's side
/// mapping duplicates of the descriptors the agent would pass.
@Suite("Disk channel (shared-memory rings)")
struct DiskChannelTests {
    static let diskBytes: UInt64 = 64 << 20

    /// An agent-side server on a raw file, started.
    final class Agent: @unchecked Sendable {
        let scratch = Scratch("disk-channel")
        let path: String
        let pool: WorkerPool
        let server: DiskServer

        init(name: String = "t") throws {
            path = scratch.file("disk.raw")
            FileManager.default.createFile(atPath: path, contents: nil)
            guard truncate(path, off_t(DiskChannelTests.diskBytes)) == 0 else { throw SystemError("truncate", errno: errno, subject: path) }
            pool = try WorkerPool(threads: 4, name: "test-disk")
            server = try DiskServer(backend: RawFileDiskBackend(path: path, identifier: "disk0"), windowBytes: 4 << 20, pool: pool, name: name)
            try server.start()
        }

        /// The VMM's view of the channel: its own descriptors (duplicates), mapped.
        func vmmSide() throws -> (queue: DiskQueue, window: SharedMemoryRegion, request: EventDoorbell, completion: EventDoorbell) {
            let copies = server.peerDescriptors.map { OwnedDescriptor(dup($0)) }
            return (try DiskQueue(mapping: copies[0]),
                    try SharedMemoryRegion(mapping: copies[1], expectedByteCount: server.window.byteCount),
                    try EventDoorbell(receiving: copies[2]), try EventDoorbell(receiving: copies[3]))
        }

        func attach(_ disk: RemoteDiskBackend) throws {
            let side = try vmmSide()
            try disk.attach(queue: side.queue, window: side.window, requestDoorbell: side.request, completionDoorbell: side.completion)
        }
    }

    @Test("eight threads of reads and writes through the rings see their own data; one thread alone is served too")
    func concurrentRequestsComplete() throws {
        let agent = try Agent()
        defer { agent.server.stop() }
        let disk = RemoteDiskBackend(byteCount: Self.diskBytes, identifier: "disk0", isReadOnly: false)
        try agent.attach(disk)
        defer { disk.close() }
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            // Each thread owns 2 MiB regions thread, thread + 8, thread + 16; sizes from 512 B to 1.5 MiB
            // (1.5 MiB is more than one window slot: split into pieces).
            for round in 0..<150 {
                let region = UInt64((round % 3) * 8 + thread) << 21
                let count = [512, 4096, 65536, 1_572_864, 12288][round % 5]
                var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: round &* 7 &+ thread), count: count)
                for at in stride(from: 0, to: count, by: 509) { bytes[at] = UInt8(truncatingIfNeeded: at / 509 &+ thread) }
                var back = [UInt8](repeating: 0, count: count)
                do {
                    try bytes.withUnsafeBytes { try disk.write($0, at: region) }
                    try back.withUnsafeMutableBytes { try disk.read(into: $0, at: region) }
                } catch {
                    failures.withLock { $0.append("thread \(thread) round \(round): \(error)") }
                    return
                }
                if back != bytes { failures.withLock { $0.append("thread \(thread) round \(round): read back other bytes") } }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(5) })")
        try disk.flush()
        // After the burst both sides went to sleep; a single request must still wake the agent.
        Thread.sleep(forTimeInterval: 0.2)
        var one = [UInt8](repeating: 0, count: 512)
        try one.withUnsafeMutableBytes { try disk.read(into: $0, at: 0) }
        // Region 0 was last written by thread 0 in round 147.
        var expected = [UInt8](repeating: UInt8(truncatingIfNeeded: 147 &* 7), count: 512)
        expected[0] = 0
        expected[509] = 1
        #expect(one == expected)
        let counters = agent.server.statistics
        #expect(counters.reads >= 8 * 150 && counters.writes >= 8 * 150 && counters.flushes == 1 && counters.rejected == 0, "\(counters)")
    }

    /// Puts `request` straight into the ring, as a hostile VMM could, and returns the completion.
    private func exchange(_ record: [UInt8], side: (queue: DiskQueue, window: SharedMemoryRegion, request: EventDoorbell, completion: EventDoorbell),
                          waitSeconds: Double = 5) throws -> DiskCompletion? {
        guard case .queued = side.queue.putRequest(record) else { throw SystemError("put", errno: ENOSPC, subject: "request ring") }
        side.request.ring()
        let deadline = Date().addingTimeInterval(waitSeconds)
        while Date() < deadline {
            if let record = side.queue.takeCompletions().first { return DiskCompletion.decode(record[...]) }
            side.completion.wait(timeoutMilliseconds: 20)
        }
        return nil
    }

    @Test("a hostile VMM's requests outside its disk or window, or malformed, are refused and touch nothing")
    func hostileRequestsAreRefused() throws {
        let agent = try Agent()
        defer { agent.server.stop() }
        let side = try agent.vmmSide()
        let window = UInt64(agent.server.window.byteCount)
        let cases: [(String, DiskRequest, DiskCompletionStatus)] = [
            ("write past the end", DiskRequest(tag: 1, operation: .write, offset: Self.diskBytes - 512, length: 4096, windowOffset: 0), .outOfRange),
            ("offset + length wrapping", DiskRequest(tag: 2, operation: .read, offset: UInt64.max - 100, length: 4096, windowOffset: 0), .outOfRange),
            ("data past the window", DiskRequest(tag: 3, operation: .read, offset: 0, length: 8192, windowOffset: window - 4096), .invalid),
            ("window offset wrapping", DiskRequest(tag: 4, operation: .write, offset: 0, length: 4096, windowOffset: UInt64.max - 10), .invalid),
            ("zero-length read", DiskRequest(tag: 5, operation: .read, offset: 0, length: 0, windowOffset: 0), .invalid),
            ("discard past the end", DiskRequest(tag: 6, operation: .discard, offset: Self.diskBytes, length: 1, windowOffset: 0), .outOfRange),
        ]
        for (what, request, expected) in cases {
            let completion = try exchange(request.encoded, side: side)
            #expect(completion?.tag == request.tag && completion?.status == expected, "\(what): \(String(describing: completion))")
        }
        var badMagic = DiskRequest(tag: 7, operation: .read, offset: 0, length: 512, windowOffset: 0).encoded
        badMagic[0] ^= 0xff
        #expect(try exchange(badMagic, side: side, waitSeconds: 1) == nil, "a record without the magic gets no answer")
        var badVersion = DiskRequest(tag: 8, operation: .read, offset: 0, length: 512, windowOffset: 0).encoded
        badVersion[4] = 0x7f
        #expect(try exchange(badVersion, side: side)?.status == .invalid)
        var reserved = DiskRequest(tag: 9, operation: .read, offset: 0, length: 512, windowOffset: 0).encoded
        reserved[44] = 1
        #expect(try exchange(reserved, side: side)?.status == .invalid)
        #expect(agent.server.statistics.rejected == 9 && agent.server.statistics.writes == 0, "\(agent.server.statistics)")
        // Nothing was written: the disk file is still all holes.
        let data = try Data(contentsOf: URL(fileURLWithPath: agent.path))
        #expect(data.count == Int(Self.diskBytes) && !data.contains { $0 != 0 })
        #expect(agent.server.protocolViolation == nil)
    }

    @Test("a producer index running ahead of the ring stops serving that disk, with the reason")
    func runawayProducerIsAViolation() throws {
        let agent = try Agent()
        defer { agent.server.stop() }
        let side = try agent.vmmSide()
        // The request producer word is at byte 64 of the queue (docs/VMX-PROTOCOL.md).
        side.queue.region.storeWord(UInt32(DiskQueue.entries) + 5, at: 64)
        side.request.ring()
        let deadline = Date().addingTimeInterval(5)
        while agent.server.protocolViolation == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let reason = try #require(agent.server.protocolViolation)
        #expect(reason.contains("ahead"), "\(reason)")
        #expect(agent.server.statistics.reads == 0)
    }

    @Test("the VMM cannot resize the shared memfds under the agent's mappings")
    func sharedMemoryIsSealed() throws {
        let agent = try Agent()
        defer { agent.server.stop() }
        for descriptor in agent.server.peerDescriptors.prefix(2) {
            let copy = dup(descriptor)
            defer { close(copy) }
            #expect(ftruncate(copy, 4096) == -1 && errno == EPERM, "shrinking fd \(descriptor) must fail with EPERM")
            #expect(ftruncate(copy, 64 << 20) == -1 && errno == EPERM, "growing fd \(descriptor) must fail with EPERM")
        }
        #expect(agent.server.window.isSizeSealed && agent.server.queue.region.isSizeSealed)
    }

    @Test("a request left unanswered by a stopped agent is sent again on the next agent's channel")
    func requestsMoveToTheNextChannel() throws {
        let first = try Agent(name: "first")
        let disk = RemoteDiskBackend(byteCount: Self.diskBytes, identifier: "disk0", isReadOnly: false)
        defer { disk.close() }
        try first.attach(disk)
        first.server.stop()
        Thread.sleep(forTimeInterval: 0.1)
        let done = Mutex<String?>(nil)
        let writer = Thread {
            let bytes = [UInt8](repeating: 0xa5, count: 4096)
            do {
                try bytes.withUnsafeBytes { try disk.write($0, at: 1 << 20) }
                done.withLock { $0 = "written" }
            } catch {
                done.withLock { $0 = "\(error)" }
            }
        }
        writer.start()
        Thread.sleep(forTimeInterval: 0.3)
        #expect(done.withLock { $0 } == nil, "nobody serves the first channel: the write waits")
        let second = try Agent(name: "second")
        defer { second.server.stop() }
        try second.attach(disk)
        let deadline = Date().addingTimeInterval(5)
        while done.withLock({ $0 }) == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let result = try #require(done.withLock { $0 })
        #expect(result == "written")
        #expect(second.server.statistics.writes == 1 && first.server.statistics.writes == 0)
        let handle = try #require(FileHandle(forReadingAtPath: second.path))
        try handle.seek(toOffset: 1 << 20)
        #expect(try handle.read(upToCount: 4096) == Data(repeating: 0xa5, count: 4096))
    }
}
