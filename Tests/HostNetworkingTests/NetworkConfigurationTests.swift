import Foundation
import Testing
@testable import HostNetworking

/// Network configuration files and the names and rules made from them (no root needed).
@Suite("Virtual switch configuration (no root needed)")
struct NetworkConfigurationTests {
    static let example = """
        [[vswitch]]
        name = "vSwitch0"
        uplinks = ["eth1", "eth2"]
        mtu = 1500

        [[portgroup]]
        name = "VM Network"
        vswitch = "vSwitch0"

        [[portgroup]]
        name = "shaped"
        vswitch = "vSwitch0"
        vlan = 20
        allow_forged_transmits = true
        average_bps = 10000000
        peak_bps = 20000000
        burst_bytes = 65536
        """

    @Test func parsesSwitchesAndPortGroups() throws {
        let configuration = try NetworkConfiguration(tomlText: Self.example, source: "network.toml")
        #expect(configuration.virtualSwitches == [VirtualSwitch(name: "vSwitch0", uplinks: ["eth1", "eth2"], mtu: 1500)])
        #expect(configuration.portGroup(named: "VM Network") == PortGroup(name: "VM Network", virtualSwitch: "vSwitch0"))
        let shaped = try #require(configuration.portGroup(named: "shaped"))
        #expect(shaped.vlan == 20 && shaped.security == SecurityPolicy(allowForgedTransmits: true))
        #expect(shaped.shaping == TrafficShaping(averageBitsPerSecond: 10_000_000, peakBitsPerSecond: 20_000_000, burstBytes: 65536))
    }

    @Test(arguments: [
        ("[[vswitch]]\nname = \"a\"\ncolour = \"red\"\n", "unknown key 'colour'"),
        ("[[vswitch]]\nname = \"a\"\nmtu = 20\n", "mtu 20"),
        ("[[vswitch]]\nname = \"a\"\nuplinks = [\"eth0/1\"]\n", "not an interface name"),
        ("[[vswitch]]\nname = \"a\"\n[[vswitch]]\nname = \"a\"\n", "defined twice"),
        ("[[vswitch]]\nname = \"a\"\nuplinks = [\"e1\"]\n[[vswitch]]\nname = \"b\"\nuplinks = [\"e1\"]\n", "uplink 'e1' is used by"),
        ("[[portgroup]]\nname = \"p\"\nvswitch = \"nowhere\"\n", "virtual switch 'nowhere', which does not exist"),
        ("[[vswitch]]\nname = \"a\"\n[[portgroup]]\nname = \"p\"\nvswitch = \"a\"\nvlan = 4095\n", "vlan 4095"),
        ("[[vswitch]]\nname = \"a\"\n[[portgroup]]\nname = \"p/q\"\nvswitch = \"a\"\n", "port group name 'p/q'"),
        ("[[vswitch]]\nname = \"a\"\n[[portgroup]]\nname = \"p\"\nvswitch = \"a\"\naverage_bps = 1000000\n", "burst_bytes"),
        ("[[vswitch]]\nname = \"a\"\n[[portgroup]]\nname = \"p\"\nvswitch = \"a\"\naverage_bps = 1000000\npeak_bps = 10\nburst_bytes = 65536\n",
         "peak rate"),
        ("[[vswitch]]\nname = \"a\"\n[[portgroup]]\nname = \"p\"\nvswitch = \"a\"\naverage_bps = 1000000\nburst_bytes = 100\n", "burst 100"),
        ("[[vswitch]]\nname = \"a\"\nuplinks = [\"vn0123456789\"]\n", "name of an interface the virtual switches create"),
        ("[host]\nid = \"x\"\n", "unknown table 'host'"),
    ])
    func refusesBadEntriesNamingThem(text: String, expected: String) {
        #expect {
            try NetworkConfiguration(tomlText: text, source: "net.toml")
        } throws: { error in
            guard let error = error as? NetworkError else { return false }
            return error.code == .invalidArgument && error.message.contains(expected) && error.message.contains("net.toml")
        }
    }

    @Test func interfaceNamesFitTheKernelAndAreStable() {
        let bridge = InterfaceNames.bridge(switch: "vSwitch0", vlan: 4094)
        let port = InterfaceNames.port(vm: "5e6f0c2a-1b3c-4d5e-8f90-123456789abc", nic: 7)
        for name in [bridge, InterfaceNames.trunk(switch: "vSwitch0", vlan: 4094), port, InterfaceNames.shaper(port: port)] {
            #expect(InterfaceNames.isValid(name) && InterfaceNames.isOwn(name) && name.utf8.count <= 15, "\(name)")
        }
        #expect(bridge == InterfaceNames.bridge(switch: "vSwitch0", vlan: 4094))
        #expect(bridge != InterfaceNames.bridge(switch: "vSwitch1", vlan: 4094))
        #expect(port != InterfaceNames.port(vm: "5e6f0c2a-1b3c-4d5e-8f90-123456789abc", nic: 6))
        #expect(!InterfaceNames.isOwn("eth0") && !InterfaceNames.isOwn("veth1234"))
    }

    @Test func rulesFollowThePolicy() {
        var port = PortRules.Port(name: "vn0011223344", configuredMAC: "02:fc:00:00:00:01", effectiveMAC: "02:fc:00:00:00:01",
                                  security: SecurityPolicy())
        var rules = PortRules.install(port)
        #expect(rules.contains("ether saddr != 02:fc:00:00:00:01 counter name vn0011223344_forged drop"))
        #expect(rules.contains("ether daddr != 02:fc:00:00:00:01 ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00"))
        #expect(!rules.contains("_blocked drop"))
        // The guest changed its address: rejected, the port receives nothing; accepted, the rules follow it.
        port.effectiveMAC = "02:fc:00:00:00:99"
        rules = PortRules.install(port)
        #expect(rules.contains("to_vn0011223344 counter name vn0011223344_blocked drop"))
        #expect(rules.contains("ether saddr != 02:fc:00:00:00:01"))
        port.security = SecurityPolicy(allowPromiscuous: true, allowMACChanges: true, allowForgedTransmits: true)
        rules = PortRules.install(port)
        #expect(!rules.contains("ether saddr !=") && !rules.contains("_blocked drop") && !rules.contains("ether daddr !="))
        #expect(rules.contains("ether type { 8021q, 8021ad }"))
    }

    @Test func shapingBecomesATokenBucket() {
        let arguments = TrafficShaper.tbfArguments(TrafficShaping(averageBitsPerSecond: 10_000_000, peakBitsPerSecond: 20_000_000, burstBytes: 65536))
        #expect(arguments == ["tbf", "rate", "10000000bit", "burst", "65536", "latency", "100ms", "peakrate", "20000000bit", "mtu", "2048"])
        #expect(!TrafficShaper.tbfArguments(TrafficShaping(averageBitsPerSecond: 8000, peakBitsPerSecond: 8000, burstBytes: 4096)).contains("peakrate"))
    }
}
