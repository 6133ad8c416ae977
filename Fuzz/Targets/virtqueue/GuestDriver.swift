@testable import Hypervisor
import FuzzSupport

/// A virtio driver as a hostile guest writes it: it knows the legacy layout and uses it, but
/// every value it writes comes from fuzz input.
struct GuestDriver {
    static let ioBase: UInt16 = 0xC000
    /// Where the queue goes by default (PFN 16: 64 KiB), and scratch memory for requests.
    static let defaultPFN: UInt32 = 16
    static let scratch: UInt64 = 0x8_0000

    let memory: GuestMemory
    let device: VirtioPCILegacyDevice
    let disk: CheckedDisk
    private var queueAddress: UInt64 = UInt64(defaultPFN) << 12
    private var queueSize: UInt16 = 0
    private var availableIndex: UInt16 = 0
    static let maximumActions = 64

    init(memory: GuestMemory, device: VirtioPCILegacyDevice, disk: CheckedDisk) {
        self.memory = memory
        self.device = device
        self.disk = disk
    }

    private func register(_ offset: UInt16, size: Int, _ value: UInt32) {
        _ = device.writeIO(port: Self.ioBase + offset, size: size, value: value)
    }

    /// The usual start: ACKNOWLEDGE, DRIVER, features, queue 0 at the default PFN, DRIVER_OK.
    mutating func initialize(features: UInt32?) {
        typealias R = VirtioPCILegacyRegister
        register(R.status, size: 1, 0)
        register(R.status, size: 1, UInt32(VirtioStatus.acknowledge | VirtioStatus.driver))
        let offered = device.readIO(port: Self.ioBase + R.hostFeatures, size: 4) ?? 0
        register(R.guestFeatures, size: 4, features ?? offered)
        register(R.queueSelect, size: 2, 0)
        queueSize = UInt16(truncatingIfNeeded: device.readIO(port: Self.ioBase + R.queueSize, size: 2) ?? 0)
        register(R.queuePFN, size: 4, Self.defaultPFN)
        queueAddress = UInt64(Self.defaultPFN) << 12
        register(R.status, size: 1, UInt32(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK))
    }

    /// A guest address: mostly inside the first MiB, sometimes anywhere (holes, past the end, 2^64 − 1).
    private func address(_ input: inout FuzzInput) -> UInt64 {
        let choice = input.byte()
        return choice < 0xC0 ? UInt64(input.integer(UInt32.self) % (1 << 20)) : input.extreme()
    }

    mutating func run(_ input: inout FuzzInput) {
        typealias R = VirtioPCILegacyRegister
        var actions = 0
        while !input.isEmpty && actions < Self.maximumActions {
            actions += 1
            switch input.byte() % 10 {
            case 0:  // bytes anywhere in guest memory
                let target = address(&input)
                try? memory.write(input.bytes(Int(input.byte())), at: target)
            case 1:  // a descriptor
                let index = UInt64(input.integer(UInt16.self)) % UInt64(max(queueSize, 1))
                let at = queueAddress + 16 * index
                try? memory.store(address(&input), at: at)
                try? memory.store(UInt32(truncatingIfNeeded: input.extreme()), at: at + 8)
                try? memory.store(input.integer(UInt16.self), at: at + 12)
                try? memory.store(input.integer(UInt16.self), at: at + 14)
            case 2:  // make a chain available (or move avail.idx anywhere)
                let ring = queueAddress + 16 * UInt64(queueSize)
                if input.byte() & 7 == 7 {
                    availableIndex = input.integer(UInt16.self)
                } else {
                    try? memory.store(input.integer(UInt16.self), at: ring + 4 + 2 * UInt64(availableIndex % max(queueSize, 1)))
                    availableIndex &+= 1
                }
                try? memory.store(availableIndex, at: ring + 2)
            case 3:  // notify
                notify(input.byte() & 7 == 7 ? input.integer(UInt16.self) : 0)
            case 4:  // any register write
                let offset = UInt16(input.byte()) % 32
                let size = [1, 2, 4][Int(input.byte()) % 3]
                let value: UInt32 = input.integer()
                register(offset, size: size, value)
                if offset == R.queuePFN { queueAddress = UInt64(value) << 12 }
            case 5:  // any register read
                _ = device.readIO(port: Self.ioBase &+ UInt16(input.byte()), size: [1, 2, 4][Int(input.byte()) % 3])
            case 6:  // a request header: type and sector
                let at = Self.scratch + UInt64(input.byte()) * 16
                let types: [UInt32] = [0, 1, 4, 8, 11, 13]
                let choice = input.byte()
                try? memory.store(choice < 0xF0 ? types[Int(choice) % types.count] : input.integer(UInt32.self), at: at)
                try? memory.store(input.extreme(), at: at + 8)
            case 7:  // a DISCARD / WRITE_ZEROES range
                let at = Self.scratch + 0x1000 + UInt64(input.byte()) * 16
                try? memory.store(input.extreme(), at: at)
                try? memory.store(input.integer(UInt32.self), at: at + 8)
                try? memory.store(input.integer(UInt32.self), at: at + 12)
            case 8:  // PCI configuration space
                let offset = Int(input.byte())
                let size = [1, 2, 4][Int(input.byte()) % 3]
                device.writeConfiguration(offset: offset, size: size, value: input.integer())
            default:
                initialize(features: input.flag() ? nil : input.integer(UInt32.self))
            }
        }
    }

    /// Writes QUEUE_NOTIFY and checks the work the device did for it.
    private func notify(_ queue: UInt16) {
        _ = disk.resetWork()
        register(VirtioPCILegacyRegister.queueNotify, size: 2, UInt32(queue))
        // The requests run on the device's I/O threads; the work of this notify is done when
        // none is in flight (the next action, like a guest waiting for its interrupt, comes after).
        guard device.drain(deadline: nil) else { fatalError("fuzz oracle: requests of a notify never completed") }
        let work = disk.resetWork()
        // At most one queue's worth of requests, each of at most a queue's worth of segments and
        // the advertised sizes (64 MiB of data, or one range of 1 GiB discarded or 64 MiB zeroed).
        let requests = UInt64(max(queueSize, 1))
        let perRequest = VirtioBlockProtocol.maximumTransfer + UInt64(VirtioBlockProtocol.maximumDiscardSectors) * 512
        guard UInt64(work.requests) <= requests * requests, work.bytes <= requests * perRequest else {
            fatalError("fuzz oracle: one notify made the disk do \(work.requests) calls and \(work.bytes) bytes (queue size \(requests))")
        }
    }
}
