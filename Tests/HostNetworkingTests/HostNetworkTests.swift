import Foundation
import Testing
import CVMFSLinux
@testable import HostNetworking
import Hypervisor
import SystemSupport

/// Virtual switches made in a throwaway network namespace: bridges, ports, rules, shaping and the
/// VLAN uplink, with frames written into and read from the TAP ports (needs root; no VMs).
@Suite("Virtual switches in a network namespace", .serialized, .enabled(if: canMakeNetworks))
struct HostNetworkTests {
    static let macA = MACAddress("02:fc:00:00:aa:01")!
    static let macB = MACAddress("02:fc:00:00:bb:02")!
    static let stranger = MACAddress("02:fc:00:00:cc:03")!

    static func configuration(uplink: String? = nil, promiscuous: Bool = false) -> NetworkConfiguration {
        NetworkConfiguration(
            virtualSwitches: [VirtualSwitch(name: "vs0", uplinks: uplink.map { [$0] } ?? [])],
            portGroups: [
                PortGroup(name: "Green", virtualSwitch: "vs0", security: SecurityPolicy(allowPromiscuous: promiscuous)),
                PortGroup(name: "Blue", virtualSwitch: "vs0", vlan: 10,
                          shaping: TrafficShaping(averageBitsPerSecond: 1_000_000, peakBitsPerSecond: 2_000_000, burstBytes: 16_384)),
            ])
    }

    static func lockDirectory() -> String { NSTemporaryDirectory() + "vswitch-locks-\(UUID().uuidString.prefix(8))" }

    @Test func bridgesPortsRulesAndShapingFollowTheConfiguration() async throws {
        try await inNetworkNamespace {
            let network = HostNetwork(lockDirectory: Self.lockDirectory())
            defer { network.shutdown(removingPorts: true) }
            try network.apply(Self.configuration())
            let green = InterfaceNames.bridge(switch: "vs0", vlan: 0), blue = InterfaceNames.bridge(switch: "vs0", vlan: 10)
            #expect(cvmfs_interface_index(green) != 0 && cvmfs_interface_index(blue) != 0)

            let port = try network.connect(vm: "vm-1", nic: 0, portGroup: "Blue", mac: Self.macA)
            defer { close(port.descriptor) }
            #expect(try ip("-j link show dev \(port.status.name)").contains("\"master\":\"\(blue)\""))
            let rules = try network.commands.run(.nft, ["list", "table", "bridge", PortRules.table], purpose: "test")
            #expect(rules.contains("from_\(port.status.name)") && rules.contains("ether saddr != \(Self.macA)"))
            let shaper = try network.commands.run(.tc, ["qdisc", "show", "dev", InterfaceNames.shaper(port: port.status.name)], purpose: "test")
            #expect(shaper.contains("tbf") && shaper.contains("rate 1Mbit"))

            // The same NIC twice is a name clash; an unknown port group names those there are.
            #expect { try network.connect(vm: "vm-1", nic: 0, portGroup: "Blue", mac: Self.macA) } throws: {
                ($0 as? NetworkError)?.code == .nameClash && "\($0)".contains(port.status.name)
            }
            #expect { try network.connect(vm: "vm-2", nic: 0, portGroup: "Red", mac: Self.macB) } throws: {
                ($0 as? NetworkError)?.code == .notFound && "\($0)".contains("'Red'") && "\($0)".contains("'Green', 'Blue'")
            }

            // A bridge no port group needs goes, once no port is on it.
            var fewer = Self.configuration()
            fewer.portGroups.removeAll { $0.name == "Green" }
            try network.apply(fewer)
            #expect(cvmfs_interface_index(green) == 0 && cvmfs_interface_index(blue) != 0)
            network.disconnect(port: port.status.name)
            #expect(cvmfs_interface_index(InterfaceNames.shaper(port: port.status.name)) == 0)
        }
    }

    @Test func forgedSourcesAndOtherPortsFramesAreDroppedUnlessThePolicyAllowsThem() async throws {
        try await inNetworkNamespace {
            let network = HostNetwork(lockDirectory: Self.lockDirectory())
            defer { network.shutdown(removingPorts: true) }
            try network.apply(Self.configuration())
            let a = try network.connect(vm: "vm-a", nic: 0, portGroup: "Green", mac: Self.macA)
            let b = try network.connect(vm: "vm-b", nic: 0, portGroup: "Green", mac: Self.macB)
            defer {
                close(a.descriptor)
                close(b.descriptor)
            }
            let portA = TapEnd(descriptor: a.descriptor), portB = TapEnd(descriptor: b.descriptor)
            _ = portB.receive(timeout: 0.2)   // whatever the kernel sent when the ports came up

            portA.send(testFrame(to: Self.macB, from: Self.macA, mark: 1))
            portA.send(testFrame(to: Self.macB, from: Self.stranger, mark: 2))     // forged source
            portA.send(testFrame(to: Self.stranger, from: Self.macA, mark: 3))     // for someone else: flooded, not for B
            let received = portB.receive().filter { $0.count > 14 && $0[12] == 0x88 }.map { $0[14] }
            #expect(received == [1])
            let counters = network.counters(port: a.status.name)
            #expect(counters.forgedDropped == 1)
            #expect(network.counters(port: b.status.name).promiscuousDropped >= 1)

            // A guest that changed its address: rejected MAC changes block what comes in.
            network.setEffectiveMAC(port: b.status.name, mac: Self.stranger)
            portA.send(testFrame(to: Self.macB, from: Self.macA, mark: 4))
            #expect(portB.receive().filter { $0.count > 14 && $0[12] == 0x88 }.isEmpty)
            #expect(network.counters(port: b.status.name).macChangeDropped >= 1)
            network.setEffectiveMAC(port: b.status.name, mac: Self.macB)

            // Promiscuous allowed: the bridge floods everything and B sees frames for others.
            try network.apply(Self.configuration(promiscuous: true))
            portA.send(testFrame(to: Self.stranger, from: Self.macA, mark: 5))
            portA.send(testFrame(to: Self.macB, from: Self.stranger, mark: 6))      // still forged: dropped
            #expect(portB.receive().filter { $0.count > 14 && $0[12] == 0x88 }.map { $0[14] } == [5])
        }
    }

    @Test func theUplinkCarriesEachPortGroupsVLANTag() async throws {
        try await inNetworkNamespace {
            try ip("link add up0 type veth peer name wire0")
            try ip("link set up0 up")
            try ip("link set wire0 up")
            let wire = cvmfs_packet_socket("wire0")
            guard wire >= 0 else { throw NetworkError(.failed, "packet socket on wire0: \(wire)") }
            defer { close(wire) }
            let network = HostNetwork(lockDirectory: Self.lockDirectory())
            defer { network.shutdown(removingPorts: true) }
            try network.apply(Self.configuration(uplink: "up0"))
            let green = try network.connect(vm: "vm-g", nic: 0, portGroup: "Green", mac: Self.macA)
            let blue = try network.connect(vm: "vm-b", nic: 0, portGroup: "Blue", mac: Self.macB)
            defer {
                close(green.descriptor)
                close(blue.descriptor)
            }
            let greenPort = TapEnd(descriptor: green.descriptor), bluePort = TapEnd(descriptor: blue.descriptor)

            func wireFrames(timeout: Double = 1) -> [(vlan: Int32, mark: UInt8)] {
                var frames: [(Int32, UInt8)] = []
                let deadline = Date().addingTimeInterval(timeout)
                var buffer = [UInt8](repeating: 0, count: 2048)
                while Date() < deadline {
                    var tag: Int32 = -1
                    let n = cvmfs_packet_receive(wire, &buffer, buffer.count, &tag)
                    if n > 14 && buffer[12] == 0x88 && buffer[13] == 0xB5 { frames.append((tag < 0 ? -1 : tag & 0xFFF, buffer[14])) }
                    if n < 0 { usleep(2000) }
                }
                return frames
            }
            #expect(network.activeUplinks["vs0"] == "up0" || { usleep(1_200_000); return network.activeUplinks["vs0"] == "up0" }())
            greenPort.send(testFrame(to: .broadcast, from: Self.macA, mark: 1))
            bluePort.send(testFrame(to: .broadcast, from: Self.macB, mark: 2))
            let out = wireFrames()
            #expect(out.contains { $0.vlan == -1 && $0.mark == 1 } && out.contains { $0.vlan == 10 && $0.mark == 2 }, "\(out)")

            // From the wire: a VLAN 10 frame reaches only Blue; an untagged one only Green.
            let source = MACAddress("02:ee:00:00:00:01")!
            var tagged = MACAddress.broadcast.bytes + source.bytes + [0x81, 0x00, 0x00, 10, 0x88, 0xB5, 3] + [UInt8](repeating: 0, count: 45)
            _ = tagged.withUnsafeMutableBytes { cvmfs_packet_send(wire, $0.baseAddress, $0.count) }
            let untagged = testFrame(to: .broadcast, from: source, mark: 4)
            _ = untagged.withUnsafeBytes { cvmfs_packet_send(wire, $0.baseAddress, $0.count) }
            let blueGot = bluePort.receive(timeout: 0.5).filter { $0.count > 14 && $0[12] == 0x88 }.map { $0[14] }
            let greenGot = greenPort.receive(timeout: 0.2).filter { $0.count > 14 && $0[12] == 0x88 }.map { $0[14] }
            #expect(blueGot == [3] && greenGot == [4], "blue \(blueGot) green \(greenGot)")
            // A guest cannot pick its VLAN: a tagged frame from a port is dropped.
            tagged = MACAddress.broadcast.bytes + Self.macA.bytes + [0x81, 0x00, 0x00, 10, 0x88, 0xB5, 5] + [UInt8](repeating: 0, count: 45)
            greenPort.send(tagged)
            #expect(wireFrames(timeout: 0.5).allSatisfy { $0.mark != 5 })
            #expect(network.counters(port: green.status.name).taggedDropped == 1)
        }
    }
}
