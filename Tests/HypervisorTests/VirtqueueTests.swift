import Foundation
import Testing
@testable import Hypervisor

/// A driver-side view of a legacy split virtqueue in guest memory, for feeding the device
/// well-formed and hostile chains.
struct TestDriver {
    let memory: GuestMemory
    let size: UInt16
    let base: UInt64
    var availableIndex: UInt16 = 0
    var queue: SplitVirtqueue

    init(memory: GuestMemory, size: UInt16 = 16, base: UInt64 = 0x10000) throws {
        self.memory = memory
        self.size = size
        self.base = base
        queue = try SplitVirtqueue(size: size, address: base, memory: memory)
    }

    func setDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0) throws {
        let entry = base + 16 * UInt64(index)
        try memory.store(address, at: entry)
        try memory.store(length, at: entry + 8)
        try memory.store(flags, at: entry + 12)
        try memory.store(next, at: entry + 14)
    }

    mutating func makeAvailable(_ head: UInt16) throws {
        try memory.store(head, at: queue.availableRing + 4 + 2 * UInt64(availableIndex % size))
        availableIndex &+= 1
        try memory.store(availableIndex, at: queue.availableRing + 2)
    }

    func usedElement(_ index: UInt16) throws -> (id: UInt32, length: UInt32) {
        let element = queue.usedRing + 4 + 8 * UInt64(index % size)
        return (try memory.load(UInt32.self, at: element), try memory.load(UInt32.self, at: element + 4))
    }
}

@Suite("Virtqueue parsing against hostile drivers (no KVM needed)")
struct VirtqueueTests {
    let memory: GuestMemory

    init() throws { memory = try GuestMemory(size: 4 << 20) }

    @Test func walksAWellFormedChainAndCompletesIt() throws {
        var driver = try TestDriver(memory: memory)
        try driver.setDescriptor(0, address: 0x20000, length: 16, flags: VirtqueueDescriptor.next, next: 1)
        try driver.setDescriptor(1, address: 0x21000, length: 512, flags: VirtqueueDescriptor.write | VirtqueueDescriptor.next, next: 2)
        try driver.setDescriptor(2, address: 0x22000, length: 1, flags: VirtqueueDescriptor.write)
        try driver.makeAvailable(0)
        let next = try driver.queue.nextAvailable(memory: memory)
        guard case .chain(let chain) = next else {
            Issue.record("expected a chain, got \(String(describing: next))")
            return
        }
        #expect(chain.head == 0 && chain.descriptors.map(\.length) == [16, 512, 1])
        #expect(try driver.queue.nextAvailable(memory: memory) == nil)
        driver.queue.complete(head: 0, writtenLength: 513, memory: memory)
        #expect(try memory.load(UInt16.self, at: driver.queue.usedRing + 2) == 1)
        #expect(try driver.usedElement(0) == (0, 513))
    }

    @Test func capsLoopsAtTheQueueSize() throws {
        var driver = try TestDriver(memory: memory)
        try driver.setDescriptor(3, address: 0x20000, length: 16, flags: VirtqueueDescriptor.next, next: 4)
        try driver.setDescriptor(4, address: 0x21000, length: 16, flags: VirtqueueDescriptor.next, next: 3)
        try driver.makeAvailable(3)
        #expect(try driver.queue.nextAvailable(memory: memory) == .malformed(head: 3, .chainTooLong(head: 3)))
    }

    @Test func rejectsNextIndexOutsideTheTable() throws {
        var driver = try TestDriver(memory: memory)
        try driver.setDescriptor(0, address: 0x20000, length: 16, flags: VirtqueueDescriptor.next, next: 16)
        try driver.makeAvailable(0)
        #expect(try driver.queue.nextAvailable(memory: memory) == .malformed(head: 0, .nextOutOfRange(16)))
    }

    @Test func rejectsIndirectDescriptors() throws {
        var driver = try TestDriver(memory: memory)
        try driver.setDescriptor(0, address: 0x20000, length: 32, flags: VirtqueueDescriptor.indirect)
        try driver.makeAvailable(0)
        #expect(try driver.queue.nextAvailable(memory: memory) == .malformed(head: 0, .indirectNotNegotiated(head: 0)))
    }

    @Test func rejectsAHeadOutsideTheTable() throws {
        var driver = try TestDriver(memory: memory)
        try driver.makeAvailable(40)
        #expect(throws: VirtqueueViolation.headOutOfRange(40)) { try driver.queue.nextAvailable(memory: memory) }
    }

    @Test func rejectsAnAvailableIndexJump() throws {
        var driver = try TestDriver(memory: memory)
        try memory.store(UInt16(17), at: driver.queue.availableRing + 2)
        #expect(throws: VirtqueueViolation.availableIndexJumped(from: 0, to: 17, queueSize: 16)) {
            try driver.queue.nextAvailable(memory: memory)
        }
    }

    @Test func rejectsRingsOutsideGuestMemory() throws {
        #expect(throws: VirtqueueViolation.ringOutsideMemory) {
            try SplitVirtqueue(size: 256, address: (4 << 20) - 4096, memory: memory)
        }
        #expect(throws: VirtqueueViolation.ringOutsideMemory) {
            try SplitVirtqueue(size: 100, address: 0, memory: memory)  // not a power of two
        }
    }
}

@Suite("virtio-blk request handling (no KVM needed)")
struct VirtioBlockTests {
    let memory: GuestMemory
    let directory: TemporaryDirectory
    let disk: RawFileDiskBackend
    let device: VirtioBlock

    init() throws {
        memory = try GuestMemory(size: 4 << 20)
        directory = try TemporaryDirectory()
        disk = try RawFileDiskBackend.createSparseFile(at: directory.path("disk.img"), byteCount: 1 << 20)
        device = VirtioBlock(backend: disk)
    }

    let header: UInt64 = 0x20000, data: UInt64 = 0x21000, status: UInt64 = 0x30000

    func request(type: UInt32, sector: UInt64, descriptors: [VirtqueueDescriptor]) throws -> (status: UInt8, used: UInt32) {
        try memory.store(type, at: header)
        try memory.store(UInt32(0), at: header + 4)
        try memory.store(sector, at: header + 8)
        try memory.store(UInt8(0xFF), at: status)
        let used = device.handle(DescriptorChain(head: 0, descriptors: descriptors), queue: 0, memory: memory,
                                 negotiatedFeatures: device.offeredFeatures)
        return (try memory.load(UInt8.self, at: status), used)
    }

    func chain(dataAddress: UInt64? = nil, dataLength: UInt32 = 512, dataWritable: Bool,
               headerFlags: UInt16 = 0, statusAddress: UInt64? = nil, statusWritable: Bool = true) -> [VirtqueueDescriptor] {
        var descriptors = [VirtqueueDescriptor(address: header, length: 16, flags: headerFlags | 1, nextIndex: 1)]
        descriptors.append(VirtqueueDescriptor(address: dataAddress ?? data, length: dataLength,
                                               flags: (dataWritable ? 2 : 0) | 1, nextIndex: 2))
        descriptors.append(VirtqueueDescriptor(address: statusAddress ?? status, length: 1,
                                               flags: statusWritable ? 2 : 0, nextIndex: 0))
        return descriptors
    }

    @Test func writesThenReadsBack() throws {
        let pattern = (0..<512).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try memory.write(pattern, at: data)
        #expect(try request(type: 1, sector: 5, descriptors: chain(dataWritable: false)) == (0, 1))
        try memory.write([UInt8](repeating: 0, count: 512), at: data)
        #expect(try request(type: 0, sector: 5, descriptors: chain(dataWritable: true)) == (0, 513))
        #expect(try memory.read(at: data, count: 512) == pattern)
        var onDisk = [UInt8](repeating: 0, count: 512)
        try onDisk.withUnsafeMutableBytes { try disk.read(into: $0, at: 5 * 512) }
        #expect(onDisk == pattern)
        #expect(device.counters.reads == 1 && device.counters.writes == 1)
    }

    @Test func answersHostileRequestsWithErrorStatuses() throws {
        let sectors = disk.byteCount / 512
        let cases: [(String, UInt32, UInt64, [VirtqueueDescriptor], UInt8)] = [
            ("data outside memory", 0, 0, chain(dataAddress: 1 << 40, dataWritable: true), 1),
            ("data wraps", 0, 0, chain(dataAddress: UInt64.max - 100, dataWritable: true), 1),
            ("oversized length", 0, 0, chain(dataLength: 0xFFFF_FE00, dataWritable: true), 1),
            ("read into readable buffer", 0, 0, chain(dataWritable: false), 1),
            ("write from writable buffer", 1, 0, chain(dataWritable: true), 1),
            ("writable header", 0, 0, chain(dataWritable: true, headerFlags: 2), 1),
            ("sector past end", 0, sectors, chain(dataWritable: true), 1),
            ("straddles the end", 0, sectors - 1, chain(dataLength: 1024, dataWritable: true), 1),
            ("sector overflow", 1, UInt64.max / 256, chain(dataWritable: false), 1),
            ("partial sector", 0, 0, chain(dataLength: 100, dataWritable: true), 1),
            ("unknown type", 0x77, 0, chain(dataWritable: true), 2),
        ]
        for (name, type, sector, descriptors, expected) in cases {
            let result = try request(type: type, sector: sector, descriptors: descriptors)
            #expect(result.status == expected, "\(name)")
            #expect(result.used == 1, "\(name)")
        }
        #expect(device.counters.rejectedRequests == cases.count)
    }

    @Test func dropsRequestsWhoseStatusCannotBeWritten() throws {
        #expect(try request(type: 0, sector: 0, descriptors: chain(dataWritable: true, statusWritable: false)) == (0xFF, 0))
        #expect(try request(type: 0, sector: 0, descriptors: chain(dataWritable: true, statusAddress: 1 << 40)) == (0xFF, 0))
        #expect(try request(type: 0, sector: 0, descriptors: Array(chain(dataWritable: true).prefix(1))) == (0xFF, 0))
    }

    @Test func flushGetIDAndDiscard() throws {
        let flush = [VirtqueueDescriptor(address: header, length: 16, flags: 1, nextIndex: 1),
                     VirtqueueDescriptor(address: status, length: 1, flags: 2, nextIndex: 0)]
        #expect(try request(type: 4, sector: 0, descriptors: flush) == (0, 1))
        #expect(try request(type: 8, sector: 0, descriptors: chain(dataLength: 20, dataWritable: true)) == (0, 21))
        #expect(String(decoding: try memory.read(at: data, count: 8), as: UTF8.self) == "disk.img")
        // Discard sectors 8..<16 after writing them.
        try memory.write([UInt8](repeating: 0xAB, count: 4096), at: data)
        #expect(try request(type: 1, sector: 8, descriptors: chain(dataLength: 4096, dataWritable: false)).status == 0)
        var segment = ByteWriter(count: 16)
        segment.put(UInt64(8), at: 0)
        segment.put(UInt32(8), at: 8)
        try memory.write(segment.bytes, at: data)
        #expect(try request(type: 11, sector: 0, descriptors: chain(dataLength: 16, dataWritable: false)).status == 0)
        var back = [UInt8](repeating: 0xFF, count: 4096)
        try back.withUnsafeMutableBytes { try disk.read(into: $0, at: 8 * 512) }
        #expect(back.allSatisfy { $0 == 0 })
        // A discard range past the end is an error.
        segment.put(disk.byteCount / 512, at: 0)
        try memory.write(segment.bytes, at: data)
        #expect(try request(type: 11, sector: 0, descriptors: chain(dataLength: 16, dataWritable: false)).status == 1)
    }
}
