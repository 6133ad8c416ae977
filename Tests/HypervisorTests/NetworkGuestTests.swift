import Foundation
import Testing
@testable import Hypervisor
import SystemSupport
import Synchronization

/// The test guest's network kit over a virtio-net NIC whose host end is a socket the test plays
/// the network on (no root needed): ARP, ICMP echo, UDP echo, a UDP stream, a forged source.
@Suite("Test guest on a virtio-net NIC", .serialized,
       .enabled(if: Host.hasKVM, "requires read/write /dev/kvm (set NO_KVM=1 to skip)"))
struct NetworkGuestTests {
    static let guestMAC = MACAddress("02:fc:00:00:10:02")!
    static let peerMAC = MACAddress("02:aa:00:00:10:01")!
    static let guestIP = Packets.ipv4("10.9.8.2")
    static let peerIP = Packets.ipv4("10.9.8.1")

    /// A VM running `workload` on a background thread, with the test's end of its NIC.
    final class RunningGuest: @unchecked Sendable {
        let machine: VirtualMachine
        let console = CapturingConsole()
        let network: Int32
        let finished = Mutex<PowerOffReason?>(nil)
        private var thread: Thread?

        init(_ workload: TestGuestWorkload, arguments: [UInt64]) throws {
            var fds: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0 else { throw HypervisorError(.systemCall, "socketpair") }
            network = fds[1]
            let nic = NetworkInterfaceConfiguration(macAddress: NetworkGuestTests.guestMAC, port: try NetworkPort(packetSocketDescriptor: fds[0]))
            machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
                vcpuCount: 1, memorySize: 64 << 20,
                bootSource: .testGuest(TestGuestConfiguration(imagePath: try GuestArtifacts.testGuest(), workload: workload, arguments: arguments)),
                console: console, networkInterfaces: [nic]))
            let thread = Thread { [self] in
                let outcome = try? machine.run(timeLimit: 60)
                finished.withLock { $0 = outcome }
            }
            thread.start()
            self.thread = thread
        }

        func stop() {
            machine.requestStop()
            while finished.withLock({ $0 }) == nil { usleep(1000) }
            close(network)
            // The thread's closure holds this guest: let go of the thread, or neither is ever
            // freed (nor the VM's KVM descriptors, which the leak check of later suites counts).
            thread = nil
        }

        func send(_ frame: [UInt8]) {
            let record = [UInt8](repeating: 0, count: 12) + frame
            _ = record.withUnsafeBytes { Glibc.send(network, $0.baseAddress, $0.count, 0) }
        }

        /// The next frame the guest sends that `accept` takes (others are skipped), within `timeout` s.
        func receive(timeout: Double = 10, _ accept: ([UInt8]) -> Bool) -> [UInt8]? {
            let deadline = Date().addingTimeInterval(timeout)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline {
                var descriptor = pollfd(fd: network, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, 50) == 1 else { continue }
                let n = recv(network, &buffer, buffer.count, 0)
                guard n > 12 else { continue }
                let frame = Array(buffer[12..<n])
                if accept(frame) { return frame }
            }
            return nil
        }

        func waitForMarker(_ code: UInt32, timeout: Double = 20) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if machine.guestMarkers.contains(where: { $0.code == code }) { return true }
                usleep(5000)
            }
            return false
        }
    }

    @Test func answersARPAndICMPEchoAndEchoesUDP() throws {
        let guest = try RunningGuest(.netResponder, arguments: [UInt64(Self.guestIP), 7, 0])
        defer { guest.stop() }
        #expect(guest.waitForMarker(0x40), "\(guest.console.text)")
        #expect(guest.console.text.contains("net: ready ip 10.9.8.2 mac 02:fc:00:00:10:02 link up"))

        guest.send(Packets.arp(operation: 1, from: Self.peerMAC, ip: Self.peerIP, to: .broadcast, targetIP: Self.guestIP))
        let reply = try #require(guest.receive { $0.count >= 42 && $0[12] == 0x08 && $0[13] == 0x06 })
        #expect(Array(reply[0..<6]) == Self.peerMAC.bytes && Array(reply[6..<12]) == Self.guestMAC.bytes)
        #expect(reply[21] == 2 && Array(reply[22..<28]) == Self.guestMAC.bytes && Array(reply[28..<32]) == Packets.bytes(Self.guestIP))

        let echo = Packets.icmpEcho(identifier: 0x1234, sequence: 7, data: Array(0..<48))
        guest.send(Packets.ip(from: Self.peerMAC, Self.peerIP, to: Self.guestMAC, Self.guestIP, protocol: 1, payload: echo))
        let pongFrame = try #require(guest.receive { Packets.parseIPv4($0)?.kind == 1 })
        let pong = try #require(Packets.parseIPv4(pongFrame))
        #expect(pong.destination == Self.peerMAC && pong.sourceIP == Self.guestIP && pong.destinationIP == Self.peerIP && pong.headerChecksumValid)
        #expect(pong.payload[0] == 0 && Array(pong.payload[4...]) == Array(echo[4...]) && Packets.checksum(pong.payload) == 0)

        for sequence in 0..<3 {
            var payload = withUnsafeBytes(of: UInt64(sequence).littleEndian, Array.init) + [UInt8](repeating: 0xAB, count: 24)
            payload[9] = UInt8(sequence)
            guest.send(Packets.ip(from: Self.peerMAC, Self.peerIP, to: Self.guestMAC, Self.guestIP, protocol: 17,
                                  payload: Packets.udp(sourcePort: 5555, port: 7, payload: payload)))
            let answerFrame = try #require(guest.receive { Packets.parseIPv4($0)?.kind == 17 })
            let answer = try #require(Packets.parseIPv4(answerFrame))
            #expect(Array(answer.payload[0..<4]) == Packets.be16(7) + Packets.be16(5555) && Array(answer.payload[8...]) == payload)
        }
        // The device counts a frame after the port took it; the frame may reach us first.
        let deadline = Date().addingTimeInterval(5)
        var counters = try #require(guest.machine.networkStatistics.first)
        while (counters.receivedPackets < 5 || counters.transmittedPackets < 5) && Date() < deadline {
            usleep(2000)
            counters = try #require(guest.machine.networkStatistics.first)
        }
        #expect(counters.receivedPackets >= 5 && counters.transmittedPackets >= 5 && counters.malformedChains == 0, "\(counters)")
    }

    @Test func sendsANumberedUDPStreamAfterResolvingItsPeerAndCanForgeItsSource() throws {
        let guest = try RunningGuest(.udpSend, arguments: [UInt64(Self.guestIP), UInt64(Self.peerIP), 9, 20, 100, 0, 1 | 4, 40000])
        defer { guest.stop() }
        let request = try #require(guest.receive { $0.count >= 42 && $0[12] == 0x08 && $0[13] == 0x06 && $0[21] == 1 })
        #expect(Array(request[38..<42]) == Packets.bytes(Self.peerIP))
        guest.send(Packets.arp(operation: 2, from: Self.peerMAC, ip: Self.peerIP, to: Self.guestMAC, targetIP: Self.guestIP))
        var sequences: [UInt64] = []
        while sequences.count < 20, let frame = guest.receive(timeout: 10, { Packets.parseIPv4($0)?.kind == 17 }) {
            let packet = try #require(Packets.parseIPv4(frame))
            #expect(packet.destination == Self.peerMAC && packet.source != Self.guestMAC, "the source should be forged")
            #expect(packet.payload.count == 108 && Array(packet.payload[2..<4]) == Packets.be16(9))
            sequences.append(packet.payload[8..<16].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        }
        #expect(sequences == Array(0..<20))
        let deadline = Date().addingTimeInterval(30)
        while guest.finished.withLock({ $0 }) == nil && Date() < deadline { usleep(10_000) }
        #expect(guest.finished.withLock { $0 } == .guestPoweredOff(status: 0), "\(guest.console.text)")
        #expect(guest.console.text.contains("udp: sent 20 echoed 0"))
    }
}
