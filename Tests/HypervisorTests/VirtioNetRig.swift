import Foundation
import Testing
@testable import Hypervisor
import SystemSupport
import Synchronization

/// A virtio-net device on a socket pair, driven the way a guest driver would: registers through
/// its I/O BAR, rings and buffers in guest memory. The test holds the host end of the port.
final class VirtioNetRig: @unchecked Sendable {
    static let ioBase: UInt16 = 0xC000
    static let mac = MACAddress("02:fc:00:00:00:01")!
    static let ringBases: [UInt64] = [0x10000, 0x20000, 0x30000]
    static let bufferBase: UInt64 = 0x100000

    let memory: GuestMemory
    let model: VirtioNet
    let device: VirtioPCILegacyDevice
    let line = RecordingInterruptLine()
    let pool: WorkerPool
    /// The host end: one record (12-byte header + frame) per message.
    let host: Int32
    /// What the device reported to its event handler, in order.
    let eventLog = EventLog()
    var drivers: [TestDriver] = []
    var negotiated: UInt32 = 0

    init(connected: Bool = true) throws {
        memory = try GuestMemory(size: 16 << 20)
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0 else { throw HypervisorError(.systemCall, "socketpair") }
        host = fds[1]
        var size: Int32 = 4 << 20
        setsockopt(host, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let recorder = eventLog
        let configuration = NetworkInterfaceConfiguration(macAddress: Self.mac, port: try NetworkPort(packetSocketDescriptor: fds[0]),
                                                          connected: connected) { event in recorder.append(event) }
        model = try VirtioNet(index: 0, configuration: configuration, memory: memory)
        pool = try WorkerPool(threads: 2, name: "net-test")
        device = VirtioPCILegacyDevice(model: model, memory: memory, ioBase: Self.ioBase, interruptLine: 16, interrupt: line, io: pool)
        try model.start()
    }

    deinit {
        model.stop()
        pool.shutdown()
        close(host)
    }

    func write(_ register: UInt16, size: Int, _ value: UInt32) {
        _ = device.writeIO(port: Self.ioBase + register, size: size, value: value)
    }

    func read(_ register: UInt16, size: Int) -> UInt32 { device.readIO(port: Self.ioBase + register, size: size) ?? 0xFFFF_FFFF }

    /// Resets the device, negotiates `features` (of those offered), places the three rings.
    func setUp(features wanted: UInt32) throws {
        typealias R = VirtioPCILegacyRegister
        write(R.status, size: 1, 0)
        write(R.status, size: 1, 3)
        negotiated = read(R.hostFeatures, size: 4) & wanted
        write(R.guestFeatures, size: 4, negotiated)
        drivers = []
        for (index, base) in Self.ringBases.enumerated() {
            write(R.queueSelect, size: 2, UInt32(index))
            let size = UInt16(read(R.queueSize, size: 2))
            try memory.write([UInt8](repeating: 0, count: Int(SplitVirtqueue.legacyByteCount(size: size))), at: base)
            drivers.append(try TestDriver(memory: memory, size: size, base: base))
            write(R.queuePFN, size: 4, UInt32(base >> 12))
        }
        write(R.status, size: 1, 7)
    }

    func notify(_ queue: Int) { write(VirtioPCILegacyRegister.queueNotify, size: 2, UInt32(queue)) }

    /// Makes chain `descriptors` available on `queue` (descriptor indexes from `first`) and notifies.
    func post(queue: Int, first: UInt16, _ descriptors: [(address: UInt64, length: UInt32, writable: Bool)], notify: Bool = true) throws {
        for (offset, descriptor) in descriptors.enumerated() {
            let index = first + UInt16(offset)
            let last = offset == descriptors.count - 1
            try drivers[queue].setDescriptor(index, address: descriptor.address, length: descriptor.length,
                                             flags: (last ? 0 : VirtqueueDescriptor.next) | (descriptor.writable ? VirtqueueDescriptor.write : 0),
                                             next: last ? 0 : index + 1)
        }
        try drivers[queue].makeAvailable(first)
        if notify { self.notify(queue) }
    }

    /// How many chains the device has returned on `queue`.
    func usedCount(_ queue: Int) -> UInt16 { (try? memory.load(UInt16.self, at: drivers[queue].queue.usedRing + 2)) ?? 0 }

    /// Waits up to 2 s until `queue` has returned `count` chains.
    func waitUsed(_ queue: Int, _ count: UInt16) -> Bool {
        let deadline = Date().addingTimeInterval(2)
        while usedCount(queue) < count && Date() < deadline { usleep(1000) }
        return usedCount(queue) >= count
    }

    /// One record from the port, or nil within `timeout` seconds.
    func receiveFromDevice(timeout: Double = 2) -> [UInt8]? {
        var descriptor = pollfd(fd: host, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let n = recv(host, &buffer, buffer.count, 0)
        return n > 0 ? Array(buffer.prefix(n)) : nil
    }

    func sendToDevice(header: [UInt8] = [UInt8](repeating: 0, count: 12), frame: [UInt8]) {
        let record = header + frame
        _ = record.withUnsafeBytes { send(host, $0.baseAddress, $0.count, 0) }
    }

    /// An Ethernet frame from `source` to `destination` with `payload` (EtherType 0x88B5, local experimental).
    static func frame(to destination: MACAddress, from source: MACAddress = MACAddress("02:aa:00:00:00:02")!, payload: [UInt8]) -> [UInt8] {
        destination.bytes + source.bytes + [0x88, 0xB5] + payload
    }
}

/// The events a NIC reported, collected from its threads.
final class EventLog: Sendable {
    private let events = Mutex<[NetworkInterfaceEvent]>([])

    func append(_ event: NetworkInterfaceEvent) { events.withLock { $0.append(event) } }
    var all: [NetworkInterfaceEvent] { events.withLock { $0 } }
}
