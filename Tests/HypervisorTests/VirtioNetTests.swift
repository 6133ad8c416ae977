import Foundation
import Testing
@testable import Hypervisor
import Synchronization

/// virtio-net against well-behaved and hostile drivers, on a socket pair (no KVM, no root).
@Suite("virtio-net device (no KVM needed)")
struct VirtioNetTests {
    typealias P = VirtioNetProtocol
    static let basic = P.featureMAC | P.featureStatus

    @Test func configurationSpaceHoldsTheMACAndLinkStatus() throws {
        let rig = try VirtioNetRig()
        #expect(rig.model.deviceType == 1 && rig.model.transitionalPCIDeviceID == 0x1000)
        let config = (0..<8).map { UInt8(rig.read(VirtioPCILegacyRegister.deviceConfiguration + UInt16($0), size: 1)) }
        #expect(Array(config[0..<6]) == VirtioNetRig.mac.bytes)
        #expect(config[6] & 1 == 1)
        let down = try VirtioNetRig(connected: false)
        #expect(down.read(VirtioPCILegacyRegister.deviceConfiguration + 6, size: 2) & 1 == 0)
    }

    @Test func transmitsAFrameWithItsHeaderGatheredFromTwoDescriptors() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        let frame = VirtioNetRig.frame(to: .broadcast, from: VirtioNetRig.mac, payload: Array(0..<64))
        try rig.memory.write([UInt8](repeating: 0, count: 10), at: VirtioNetRig.bufferBase)
        try rig.memory.write(frame, at: VirtioNetRig.bufferBase + 0x1000)
        try rig.post(queue: P.transmitQueue, first: 0, [(VirtioNetRig.bufferBase, 10, false),
                                                         (VirtioNetRig.bufferBase + 0x1000, UInt32(frame.count), false)])
        let record = try #require(rig.receiveFromDevice())
        #expect(record.count == 12 + frame.count && Array(record.dropFirst(12)) == frame)
        #expect(rig.waitUsed(P.transmitQueue, 1))
        #expect(try rig.drivers[P.transmitQueue].usedElement(0) == (0, 0))
        let counters = rig.model.counters
        #expect(counters.transmittedPackets == 1 && counters.transmittedBytes == UInt64(frame.count))
    }

    @Test func deliversFramesForItsAddressAndBroadcastAndFiltersOthers() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        for slot in 0..<3 {
            try rig.post(queue: P.receiveQueue, first: UInt16(slot), [(VirtioNetRig.bufferBase + UInt64(slot) * 0x1000, 2048, true)])
        }
        let mine = VirtioNetRig.frame(to: VirtioNetRig.mac, payload: [1, 2, 3])
        rig.sendToDevice(frame: VirtioNetRig.frame(to: MACAddress("02:bb:00:00:00:09")!, payload: [9]))
        rig.sendToDevice(frame: mine)
        rig.sendToDevice(frame: VirtioNetRig.frame(to: .broadcast, payload: [4]))
        #expect(rig.waitUsed(P.receiveQueue, 2))
        let first = try rig.drivers[P.receiveQueue].usedElement(0)
        #expect(first.length == UInt32(10 + mine.count))
        #expect(try rig.memory.read(at: VirtioNetRig.bufferBase + UInt64(first.id) * 0x1000, count: 10 + mine.count)
                == [UInt8](repeating: 0, count: 10) + mine)
        usleep(50_000)
        let counters = rig.model.counters
        #expect(counters.receivedPackets == 2 && counters.receiveFiltered == 1 && rig.usedCount(P.receiveQueue) == 2)
    }

    @Test func hostileTransmitChainsAreReturnedEmptyAndNothingLeaves() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        let base = VirtioNetRig.bufferBase
        let frame = VirtioNetRig.frame(to: .broadcast, from: VirtioNetRig.mac, payload: [7, 7, 7])
        try rig.memory.write([UInt8](repeating: 0, count: 10) + frame, at: base)
        // A device-writable descriptor in a transmit chain.
        try rig.post(queue: P.transmitQueue, first: 0, [(base, UInt32(10 + frame.count), true)])
        // A buffer outside guest memory, and one that ends past it.
        try rig.post(queue: P.transmitQueue, first: 1, [(0xFFFF_F000_0000, 64, false)])
        try rig.post(queue: P.transmitQueue, first: 2, [(UInt64(16 << 20) - 20, 64, false)])
        // Shorter than a header and an Ethernet header.
        try rig.post(queue: P.transmitQueue, first: 3, [(base, 20, false)])
        // A checksum request the driver did not negotiate.
        try rig.memory.write([1, 0, 0, 0, 14, 0, 16, 0, 0, 0], at: base + 0x2000)
        try rig.memory.write(frame, at: base + 0x200A)
        try rig.post(queue: P.transmitQueue, first: 4, [(base + 0x2000, UInt32(10 + frame.count), false)])
        #expect(rig.waitUsed(P.transmitQueue, 5))
        for index in 0..<5 { #expect(try rig.drivers[P.transmitQueue].usedElement(UInt16(index)).length == 0) }
        #expect(rig.receiveFromDevice(timeout: 0.2) == nil)
        // The device still works.
        try rig.post(queue: P.transmitQueue, first: 5, [(base, UInt32(10 + frame.count), false)])
        #expect(rig.receiveFromDevice().map { Array($0.dropFirst(12)) } == frame)
        #expect(rig.waitUsed(P.transmitQueue, 6))     // counted before it is returned
        let counters = rig.model.counters
        #expect(counters.malformedChains == 4 && counters.transmitDropped == 1 && counters.transmittedPackets == 1)
    }

    @Test func hostileReceiveBuffersAreReturnedEmptyAndTheFrameGoesToTheNextGoodOne() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        try rig.post(queue: P.receiveQueue, first: 0, [(VirtioNetRig.bufferBase, 2048, false)])          // not writable
        try rig.post(queue: P.receiveQueue, first: 1, [(UInt64(16 << 20) - 100, 2048, true)])           // past the end of RAM
        try rig.post(queue: P.receiveQueue, first: 2, [(VirtioNetRig.bufferBase + 0x1000, 2048, true)])
        let frame = VirtioNetRig.frame(to: VirtioNetRig.mac, payload: [5, 6])
        rig.sendToDevice(frame: frame)
        #expect(rig.waitUsed(P.receiveQueue, 3))
        let used = try (0..<3).map { try rig.drivers[P.receiveQueue].usedElement(UInt16($0)) }
        #expect(used.filter { $0.length == 0 }.map(\.id).sorted() == [0, 1])
        #expect(used.contains { $0.id == 2 && $0.length == UInt32(10 + frame.count) })
        #expect(rig.model.counters.malformedChains == 2 && rig.model.counters.receivedPackets == 1)
    }

    @Test func aFrameLargerThanTheBufferIsDroppedWithoutMergeableBuffers() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        try rig.post(queue: P.receiveQueue, first: 0, [(VirtioNetRig.bufferBase, 256, true)])
        rig.sendToDevice(frame: VirtioNetRig.frame(to: VirtioNetRig.mac, payload: [UInt8](repeating: 1, count: 1000)))
        let small = VirtioNetRig.frame(to: VirtioNetRig.mac, payload: [2])
        rig.sendToDevice(frame: small)
        #expect(rig.waitUsed(P.receiveQueue, 1))
        #expect(try rig.drivers[P.receiveQueue].usedElement(0).length == UInt32(10 + small.count))
        #expect(rig.model.counters.receiveDropped == 1)
    }

    @Test func mergeableBuffersSpreadALargeFrameOverSeveralChains() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic | P.featureMergeableReceiveBuffers)
        #expect(rig.negotiated & P.featureMergeableReceiveBuffers != 0)
        for slot in 0..<6 {
            try rig.post(queue: P.receiveQueue, first: UInt16(slot), [(VirtioNetRig.bufferBase + UInt64(slot) * 0x1000, 256, true)])
        }
        let frame = VirtioNetRig.frame(to: VirtioNetRig.mac, payload: (0..<1000).map { UInt8(truncatingIfNeeded: $0) })
        rig.sendToDevice(frame: frame)
        #expect(rig.waitUsed(P.receiveQueue, 5))
        let used = try (0..<5).map { try rig.drivers[P.receiveQueue].usedElement(UInt16($0)) }
        #expect(used.map(\.length) == [256, 256, 256, 256, UInt32(12 + frame.count - 4 * 256)])
        let header = try rig.memory.read(at: VirtioNetRig.bufferBase, count: 12)
        #expect(header[10] == 5 && header[11] == 0)          // num_buffers
        var delivered: [UInt8] = []
        for (index, entry) in used.enumerated() {
            let start = index == 0 ? 12 : 0
            delivered += try rig.memory.read(at: VirtioNetRig.bufferBase + UInt64(entry.id) * 0x1000 + UInt64(start), count: Int(entry.length) - start)
        }
        #expect(delivered == frame)
    }

    @Test func theDriverChangesItsAddressAndAResetRestoresIt() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        rig.write(VirtioPCILegacyRegister.deviceConfiguration + 5, size: 1, 0x77)
        let changed = MACAddress("02:fc:00:00:00:77")!
        #expect(rig.eventLog.all == [.macAddressChanged(interface: 0, changed)])
        #expect(rig.model.counters.macAddress == changed)
        rig.write(VirtioPCILegacyRegister.status, size: 1, 0)
        #expect(rig.model.counters.macAddress == VirtioNetRig.mac)
        #expect(rig.eventLog.all.last == .macAddressChanged(interface: 0, VirtioNetRig.mac))
    }

    @Test func controlQueueCommandsNeedTheirFeaturesAndAreAcknowledged() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic | P.featureControlQueue | P.featureControlReceiveMode)
        let base = VirtioNetRig.bufferBase
        // MAC_ADDR_SET without CTRL_MAC_ADDR negotiated: refused.
        try rig.memory.write([P.controlMAC, P.commandMACAddressSet] + MACAddress("02:fc:00:00:00:42")!.bytes, at: base)
        try rig.memory.write([0xFF], at: base + 0x100)
        try rig.post(queue: P.controlQueue, first: 0, [(base, 8, false), (base + 0x100, 1, true)])
        #expect(rig.waitUsed(P.controlQueue, 1))
        #expect(try rig.memory.read(at: base + 0x100, count: 1) == [P.ackError])
        // PROMISC on: acknowledged, reported, and unicast to others is delivered.
        try rig.memory.write([P.controlReceiveMode, P.commandPromiscuous, 1], at: base + 0x200)
        try rig.post(queue: P.controlQueue, first: 2, [(base + 0x200, 3, false), (base + 0x300, 1, true)])
        #expect(rig.waitUsed(P.controlQueue, 2))
        #expect(try rig.memory.read(at: base + 0x300, count: 1) == [P.ackOK])
        #expect(rig.eventLog.all.contains(.receiveModeChanged(interface: 0, promiscuous: true, allMulticast: true)))
        try rig.post(queue: P.receiveQueue, first: 0, [(base + 0x1000, 2048, true)])
        rig.sendToDevice(frame: VirtioNetRig.frame(to: MACAddress("02:bb:00:00:00:09")!, payload: [1]))
        #expect(rig.waitUsed(P.receiveQueue, 1))
        // A command with no ack descriptor is returned with nothing written.
        try rig.post(queue: P.controlQueue, first: 4, [(base + 0x200, 3, false)])
        #expect(rig.waitUsed(P.controlQueue, 3))
        #expect(try rig.drivers[P.controlQueue].usedElement(2).length == 0)
    }

    @Test func announcesTheAddressWithReverseARPFiveTimes() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        rig.model.announce()
        var frames: [[UInt8]] = []
        let start = Date()
        while frames.count < 5, let record = rig.receiveFromDevice(timeout: 1) { frames.append(Array(record.dropFirst(12))) }
        #expect(frames.count == 5)
        #expect(Date().timeIntervalSince(start) < 2)
        for frame in frames {
            #expect(Array(frame[0..<6]) == MACAddress.broadcast.bytes && Array(frame[6..<12]) == VirtioNetRig.mac.bytes)
            #expect(frame[12] == 0x80 && frame[13] == 0x35 && frame[21] == 3)   // RARP, reverse request
        }
        // Counted once the round's frames were written, just after the test read them.
        let deadline = Date().addingTimeInterval(1)
        while rig.model.counters.announcements < 5 && Date() < deadline { usleep(1000) }
        #expect(rig.model.counters.announcements == 5)
    }

    @Test func aLinkDownIsSignalledAndDropsTraffic() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        rig.model.setLink(up: false)
        #expect(rig.read(VirtioPCILegacyRegister.deviceConfiguration + 6, size: 2) & 1 == 0)
        #expect(rig.read(VirtioPCILegacyRegister.isr, size: 1) & 2 == 2)
        let frame = VirtioNetRig.frame(to: .broadcast, from: VirtioNetRig.mac, payload: [1])
        try rig.memory.write([UInt8](repeating: 0, count: 10) + frame, at: VirtioNetRig.bufferBase)
        try rig.post(queue: P.transmitQueue, first: 0, [(VirtioNetRig.bufferBase, UInt32(10 + frame.count), false)])
        #expect(rig.waitUsed(P.transmitQueue, 1))
        #expect(rig.receiveFromDevice(timeout: 0.2) == nil)
        #expect(rig.model.counters.transmitDropped == 1)
    }

    @Test func aResetWithBuffersHeldReturnsPromptly() throws {
        let rig = try VirtioNetRig()
        try rig.setUp(features: Self.basic)
        for slot in 0..<8 { try rig.post(queue: P.receiveQueue, first: UInt16(slot), [(VirtioNetRig.bufferBase + UInt64(slot) * 0x1000, 2048, true)]) }
        usleep(20_000)
        let start = Date()
        rig.write(VirtioPCILegacyRegister.status, size: 1, 0)
        #expect(Date().timeIntervalSince(start) < 1)
        // Set up again: frames go to the new rings' buffers only.
        try rig.setUp(features: Self.basic)
        try rig.post(queue: P.receiveQueue, first: 0, [(VirtioNetRig.bufferBase + 0x10000, 2048, true)])
        rig.sendToDevice(frame: VirtioNetRig.frame(to: VirtioNetRig.mac, payload: [3]))
        #expect(rig.waitUsed(P.receiveQueue, 1))
        #expect(try rig.drivers[P.receiveQueue].usedElement(0).id == 0)
    }
}
