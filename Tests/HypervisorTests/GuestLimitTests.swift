import Foundation
import Synchronization
import SystemSupport
import Testing
@testable import Hypervisor

/// A disk in memory whose discard, being a hint, does nothing (as on many block devices); it
/// can call back on every read (to play a second vCPU that keeps the driver's ring busy).
final class HintOnlyDisk: DiskBackend, @unchecked Sendable {
    let byteCount: UInt64
    var identifier: String { "hint-only" }
    private let storage: Mutex<[UInt8]>
    private let discards = Mutex(0)
    var onRead: (@Sendable () -> Void)?

    init(byteCount: UInt64) {
        self.byteCount = byteCount
        storage = Mutex([UInt8](repeating: 0, count: Int(byteCount)))
    }

    var discardCount: Int { discards.withLock { $0 } }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        onRead?()
        storage.withLock { bytes in bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) } }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        storage.withLock { bytes in bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count]).copyMemory(from: buffer) } }
    }

    func flush() throws(DiskError) {}

    func discard(offset: UInt64, length: UInt64) throws(DiskError) { discards.withLock { $0 += 1 } }

    func bytes(at offset: Int, count: Int) -> [UInt8] { storage.withLock { Array($0[offset..<offset + count]) } }
}

@Suite("A guest cannot make the VMM work without bound (no KVM needed)")
struct GuestLimitTests {
    let memory: GuestMemory
    let header: UInt64 = 0x20000, data: UInt64 = 0x21000, status: UInt64 = 0x30000

    init() throws { memory = try GuestMemory(size: 4 << 20) }

    /// A DISCARD (11) or WRITE_ZEROES (13) request whose ranges {sector, count, flags} sit in
    /// `split` data descriptors.
    func rangeRequest(_ device: VirtioBlock, type: UInt32, ranges: [(UInt64, UInt32, UInt32)], split: Int = 1,
                      features: UInt32? = nil) throws -> UInt8 {
        var payload = ByteWriter(count: 16 * ranges.count)
        for (index, range) in ranges.enumerated() {
            payload.put(range.0, at: 16 * index)
            payload.put(range.1, at: 16 * index + 8)
            payload.put(range.2, at: 16 * index + 12)
        }
        try memory.write(payload.bytes, at: data)
        try memory.store(type, at: header)
        try memory.store(UInt64(0), at: header + 8)
        try memory.store(UInt8(0xFF), at: status)
        var descriptors = [VirtqueueDescriptor(address: header, length: 16, flags: 1, nextIndex: 1)]
        let piece = payload.bytes.count / split
        for index in 0..<split {
            descriptors.append(VirtqueueDescriptor(address: data + UInt64(index * piece), length: UInt32(piece), flags: 1,
                                                   nextIndex: UInt16(descriptors.count + 1)))
        }
        descriptors.append(VirtqueueDescriptor(address: status, length: 1, flags: 2, nextIndex: 0))
        _ = device.handle(DescriptorChain(head: 0, descriptors: descriptors), queue: 0, memory: memory,
                          negotiatedFeatures: features ?? device.offeredFeatures)
        return try memory.load(UInt8.self, at: status)
    }

    @Test func discardAndWriteZeroesKeepToTheAdvertisedLimits() throws {
        let disk = HintOnlyDisk(byteCount: 1 << 20)
        let device = VirtioBlock(backend: disk)
        let configuration = device.configurationBytes
        func field(_ offset: Int) -> UInt32 { configuration[offset..<offset + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        let maxDiscardSectors = field(36), maxDiscardSegments = field(40)
        let maxZeroSectors = field(48), maxZeroSegments = field(52)
        #expect(maxDiscardSegments == 1 && maxZeroSegments == 1)
        // Every request stays within 64 MiB of work.
        #expect(UInt64(maxDiscardSectors) * 512 <= 1 << 30 && UInt64(maxZeroSectors) * 512 <= 64 << 20)
        let discardOnly = VirtioBlockProtocol.featureDiscard, zeroesOnly = VirtioBlockProtocol.featureWriteZeroes
        // More ranges than advertised, even a million of them, are refused without being executed.
        #expect(try rangeRequest(device, type: 11, ranges: [(0, 8, 0), (8, 8, 0)]) == 2)
        #expect(try rangeRequest(device, type: 13, ranges: Array(repeating: (0, 8, 0), count: 4096)) == 2)
        #expect(disk.discardCount == 0)
        // Not negotiated: unsupported.
        #expect(try rangeRequest(device, type: 11, ranges: [(0, 8, 0)], features: zeroesOnly) == 2)
        #expect(try rangeRequest(device, type: 13, ranges: [(0, 8, 0)], features: discardOnly) == 2)
        // Unknown flags, and UNMAP on a discard: unsupported.
        #expect(try rangeRequest(device, type: 11, ranges: [(0, 8, 1)]) == 2)
        #expect(try rangeRequest(device, type: 13, ranges: [(0, 8, 6)]) == 2)
        // Longer than advertised, or past the end: I/O error.
        #expect(try rangeRequest(device, type: 11, ranges: [(0, maxDiscardSectors &+ 1, 0)]) == 1)
        #expect(try rangeRequest(device, type: 13, ranges: [(0, maxZeroSectors &+ 1, 0)]) == 1)
        #expect(try rangeRequest(device, type: 13, ranges: [(2047, 2, 0)]) == 1)
        #expect(disk.discardCount == 0)
        // One range split across two descriptors is one range.
        #expect(try rangeRequest(device, type: 11, ranges: [(0, 8, 0)], split: 2) == 0)
        #expect(disk.discardCount == 1)
    }

    @Test func writeZeroesGuaranteesZerosWhereDiscardIsOnlyAHint() throws {
        let disk = HintOnlyDisk(byteCount: 1 << 20)
        let device = VirtioBlock(backend: disk)
        let pattern = [UInt8](repeating: 0xA5, count: 8192)
        try pattern.withUnsafeBytes { try disk.write($0, at: 4096) }
        #expect(try rangeRequest(device, type: 13, ranges: [(8, 8, 0)]) == 0)
        #expect(try rangeRequest(device, type: 13, ranges: [(16, 8, 1)]) == 0)
        #expect(disk.bytes(at: 4096, count: 8192) == [UInt8](repeating: 0, count: 8192), "WRITE_ZEROES must leave zeros")
        #expect(disk.bytes(at: 4096 + 8192, count: 512) == [UInt8](repeating: 0, count: 512))
    }

    @Test func writeZeroesWithoutUnmapKeepsAFileAllocated() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("disk.img")
        let disk = try RawFileDiskBackend.createSparseFile(at: path, byteCount: 4 << 20)
        let device = VirtioBlock(backend: disk)
        let pattern = [UInt8](repeating: 0x3C, count: 2 << 20)
        try pattern.withUnsafeBytes { try disk.write($0, at: 0) }
        try disk.flush()
        func allocated() -> Int {
            var info = stat()
            stat(path, &info)
            return Int(info.st_blocks) * 512
        }
        #expect(allocated() >= 2 << 20)
        #expect(try rangeRequest(device, type: 13, ranges: [(0, 2048, 0)]) == 0)  // the first MiB, space kept
        #expect(allocated() >= 2 << 20, "without UNMAP the range must stay allocated")
        #expect(try rangeRequest(device, type: 13, ranges: [(2048, 2048, 1)]) == 0)  // the second MiB, may be freed
        #expect(allocated() < 2 << 20, "with UNMAP a sparse file gives the space back")
        var back = [UInt8](repeating: 0xFF, count: 2 << 20)
        try back.withUnsafeMutableBytes { try disk.read(into: $0, at: 0) }
        #expect(back.allSatisfy { $0 == 0 })
    }

    @Test(.enabled(if: geteuid() == 0, "needs root for a loop device"))
    func writeZeroesOnABlockDeviceUsesZeroOut() throws {
        let directory = try TemporaryDirectory()
        let backing = directory.path("backing.img")
        try Data(repeating: 0x77, count: 4 << 20).write(to: URL(fileURLWithPath: backing))
        func losetup(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/sbin/losetup")
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let loop = try losetup(["--find", "--show", backing])
        try #require(loop.hasPrefix("/dev/loop"))
        defer { _ = try? losetup(["-d", loop]) }
        let disk = try RawFileDiskBackend(path: loop)
        let device = VirtioBlock(backend: disk)
        #expect(try rangeRequest(device, type: 13, ranges: [(8, 2048, 0)]) == 0)
        var back = [UInt8](repeating: 0xFF, count: (1 << 20) + 8192)
        try back.withUnsafeMutableBytes { try disk.read(into: $0, at: 0) }
        #expect(back[0..<4096].allSatisfy { $0 == 0x77 })
        #expect(back[4096..<(4096 + (1 << 20))].allSatisfy { $0 == 0 })
        #expect(back[(4096 + (1 << 20))...].allSatisfy { $0 == 0x77 })
    }

    @Test func aNotifyServesAtMostOneQueueOfRequests() throws {
        let disk = HintOnlyDisk(byteCount: 1 << 20)
        let line = RecordingInterruptLine()
        let io = try WorkerPool(threads: 4, name: "test-io")
        defer { io.shutdown() }
        let device = VirtioPCILegacyDevice(model: VirtioBlock(backend: disk), memory: memory, ioBase: 0xC000, interruptLine: 16,
                                           interrupt: line, io: io)
        let ring: UInt64 = 0x100000
        var driver = try TestDriver(memory: memory, size: 256, base: ring)
        try driver.setDescriptor(0, address: header, length: 16, flags: 1, next: 1)
        try driver.setDescriptor(1, address: data, length: 512, flags: 3, next: 2)
        try driver.setDescriptor(2, address: status, length: 1, flags: 2)
        try memory.store(UInt32(0), at: header)
        try memory.store(UInt64(0), at: header + 8)
        _ = device.writeIO(port: 0xC000 + 18, size: 1, value: 7)
        _ = device.writeIO(port: 0xC000 + 8, size: 4, value: UInt32(ring >> 12))
        // Every request the device serves makes another one available, as a second vCPU could.
        let reads = Mutex(0)
        let availableIndex = driver.queue.availableRing + 2
        let memory = self.memory
        disk.onRead = {
            let count = reads.withLock { count -> Int in
                count += 1
                return count
            }
            guard count < 100_000 else { return }
            try? memory.store(UInt16(truncatingIfNeeded: count + 1), at: availableIndex)
        }
        try driver.makeAvailable(0)
        _ = device.writeIO(port: 0xC000 + 16, size: 2, value: 0)
        #expect(device.drain(deadline: nil))
        let served = reads.withLock { $0 }
        #expect(served <= 256, "one notify served \(served) requests")
        #expect(device.deviceStatus & VirtioStatus.needsReset == 0)
        // The next notify goes on where the last one stopped.
        _ = device.writeIO(port: 0xC000 + 16, size: 2, value: 0)
        #expect(device.drain(deadline: nil))
        #expect(reads.withLock { $0 } == 2 * served)
    }

    @Test func theKeyboardControllerKeepsAFewRepliesNotAllOfThem() throws {
        let controller = I8042Controller(power: PowerControl())
        for _ in 0..<200_000 {
            controller.write(offset: 4, size: 1, value: 0xAA)  // self-test: one reply each
            controller.write(offset: 0, size: 1, value: 0xFF)  // keyboard reset: two replies each
        }
        var pending = 0
        while controller.read(offset: 4, size: 1) & 1 != 0 && pending < 1_000_000 {
            _ = controller.read(offset: 0, size: 1)
            pending += 1
        }
        #expect(pending <= 16, "\(pending) replies were queued")
        #expect(pending > 0)
        controller.write(offset: 4, size: 1, value: 0xAA)
        #expect(controller.read(offset: 0, size: 1) == 0x55, "the controller still answers once drained")
    }
}
