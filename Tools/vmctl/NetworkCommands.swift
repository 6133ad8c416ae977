import ArgumentParser
import FoundationEssentials
import HostAgentAPI
import HostAgentClient
import OpenAPIRuntime
import VMFSToolSupport

/// `vmctl vswitch …`: the host agent's virtual switches.
struct VirtualSwitchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vswitch", abstract: "List, add and remove the host's virtual switches (through its agent).",
        subcommands: [List.self, Add.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The virtual switches, their uplinks and port groups.")
        @OptionGroup var agent: AgentOptions
        @Flag(help: "Print as JSON.") var json = false

        func run() async throws {
            try await withAgent(try agent.endpoint()) { client in
                let switches = try await client.listVirtualSwitches().ok.body.json
                if json { return ToolOutput.json(switches) }
                var table = TextTable(header: ["NAME", "UPLINKS", "ACTIVE", "MTU", "PORT GROUPS", "TO/FROM UPLINK", "SOURCE"])
                for entry in switches {
                    table.add([entry.name, entry.uplinks.joined(separator: ","), entry.activeUplink ?? "-", "\(entry.mtu)",
                               entry.portGroups.joined(separator: ","),
                               "\(entry.toUplinkFrames ?? 0)/\(entry.fromUplinkFrames ?? 0)", entry.source.rawValue].map(\.escapingControlCharacters))
                }
                print(table.render())
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a virtual switch.")
        @OptionGroup var agent: AgentOptions
        @Option(help: "An uplink interface; repeat for failover order.") var uplink: [String] = []
        @Option(help: "MTU of its ports.") var mtu = 1500
        @Argument var name: String

        func run() async throws {
            try await withAgent(try agent.endpoint()) { client in
                _ = try await client.createVirtualSwitch(body: .json(.init(name: name, uplinks: uplink, mtu: mtu))).created
                print("virtual switch '\(name.escapingControlCharacters)' added")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a virtual switch that has no port groups.")
        @OptionGroup var agent: AgentOptions
        @Argument var name: String

        func run() async throws {
            try await withAgent(try agent.endpoint()) { client in
                _ = try await client.deleteVirtualSwitch(path: .init(vswitch: name)).noContent
            }
        }
    }
}

/// Options of a port group (add and set).
struct PortGroupOptions: ParsableArguments {
    @Option(help: "The virtual switch.") var vswitch: String
    @Option(help: "802.1Q VLAN ID on the uplink (0: untagged).") var vlan = 0
    @Flag(name: .customLong("allow-promiscuous"), help: "Ports may receive every frame of their VLAN.") var allowPromiscuous = false
    @Flag(name: .customLong("allow-mac-changes"), help: "Guests may change their NIC's address and keep receiving.") var allowMACChanges = false
    @Flag(name: .customLong("allow-forged-transmits"), help: "Frames may leave with another source address.") var allowForgedTransmits = false
    @Option(help: "Shaping: average rate of what each port sends, e.g. 10M (bit/s).") var average: String?
    @Option(help: "Shaping: peak rate (default: the average).") var peak: String?
    @Option(help: "Shaping: burst, e.g. 64K (bytes).") var burst: String?

    func body(name: String) throws -> Components.Schemas.PortGroup {
        var shaping: Components.Schemas.TrafficShaping?
        if let average {
            guard let rate = parseRate(average) else { throw ValidationError("--average '\(average)' is not a rate") }
            let peakRate = try peak.map { (text: String) throws -> UInt64 in
                guard let value = parseRate(text) else { throw ValidationError("--peak '\(text)' is not a rate") }
                return value
            } ?? rate
            guard let burstBytes = parseSize(burst ?? "64K") else { throw ValidationError("--burst '\(burst ?? "")' is not a size") }
            shaping = .init(averageBitsPerSecond: Int64(clamping: rate), peakBitsPerSecond: Int64(clamping: peakRate), burstBytes: Int64(clamping: burstBytes))
        } else if peak != nil || burst != nil {
            throw ValidationError("--peak and --burst need --average")
        }
        return .init(name: name, vswitch: vswitch, vlan: vlan,
                     security: .init(allowPromiscuous: allowPromiscuous, allowMACChanges: allowMACChanges, allowForgedTransmits: allowForgedTransmits),
                     shaping: shaping)
    }
}

/// A rate like 10M, 1.5G or 64000 (bits per second, decimal units).
func parseRate(_ text: String) -> UInt64? {
    let units: [Character: Double] = ["k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9]
    var digits = Substring(text)
    var scale = 1.0
    if let last = digits.last, let unit = units[last] {
        scale = unit
        digits = digits.dropLast()
    }
    guard let value = Double(digits), value > 0, value * scale < 1e15 else { return nil }
    return UInt64(value * scale)
}

/// `vmctl portgroup …`: the host agent's port groups.
struct PortGroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portgroup", abstract: "List, add, change and remove the host's port groups (through its agent).",
        subcommands: [List.self, Add.self, Set.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The port groups, their VLANs, policies, shaping and connected ports.")
        @OptionGroup var agent: AgentOptions
        @Flag(help: "Print as JSON.") var json = false

        func run() async throws {
            try await withAgent(try agent.endpoint()) { client in
                let groups = try await client.listPortGroups().ok.body.json
                if json { return ToolOutput.json(groups) }
                var table = TextTable(header: ["NAME", "VSWITCH", "VLAN", "PROMISC", "MAC CHANGES", "FORGED", "SHAPING", "PORTS", "SOURCE"])
                func word(_ allowed: Bool?) -> String { allowed == true ? "accept" : "reject" }
                for group in groups {
                    let shaping = group.shaping.map { "\($0.averageBitsPerSecond)/\($0.peakBitsPerSecond ?? $0.averageBitsPerSecond) bit/s, \($0.burstBytes) B" } ?? "-"
                    table.add([group.name, group.vswitch, "\(group.vlan)", word(group.security.allowPromiscuous), word(group.security.allowMACChanges),
                               word(group.security.allowForgedTransmits), shaping, "\(group.ports.count)", group.source.rawValue].map(\.escapingControlCharacters))
                }
                print(table.render())
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a port group.")
        @OptionGroup var agent: AgentOptions
        @OptionGroup var options: PortGroupOptions
        @Argument var name: String

        func run() async throws {
            let body = try options.body(name: name)
            try await withAgent(try agent.endpoint()) { client in
                _ = try await client.createPortGroup(body: .json(body)).created
                print("port group '\(name.escapingControlCharacters)' added")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a port group (policy and shaping apply to connected ports at once).")
        @OptionGroup var agent: AgentOptions
        @OptionGroup var options: PortGroupOptions
        @Argument var name: String

        func run() async throws {
            let body = try options.body(name: name)
            try await withAgent(try agent.endpoint()) { client in
                _ = try await client.updatePortGroup(path: .init(portgroup: name), body: .json(body)).ok
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a port group no running VM uses.")
        @OptionGroup var agent: AgentOptions
        @Argument var name: String

        func run() async throws {
            try await withAgent(try agent.endpoint()) { client in
                _ = try await client.deletePortGroup(path: .init(portgroup: name)).noContent
            }
        }
    }
}

/// `vmctl nics VM`: a VM's NICs and their counters.
struct NICs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nics", abstract: "A VM's NICs: port groups, addresses and counters.")
    @OptionGroup var agent: AgentOptions
    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "The VM's name or UUID.") var vm: String

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            let nics = try await client.listVMNICs(path: .init(vm: vm)).ok.body.json
            if json { return ToolOutput.json(nics) }
            for nic in nics {
                var line = "ethernet\(nic.index): \(nic.portGroup) \(nic.macAddress)"
                if let effective = nic.effectiveMACAddress, effective != nic.macAddress { line += " (guest uses \(effective))" }
                if let port = nic.port { line += ", port \(port), link \(nic.linkUp == true ? "up" : "down")" }
                print(line.escapingControlCharacters)
                if let vmm = nic.vmm {
                    print("  guest: rx \(vmm.receivedPackets) frames \(vmm.receivedBytes) B (dropped \(vmm.receiveDropped), filtered \(vmm.receiveFiltered)), "
                          + "tx \(vmm.transmittedPackets) frames \(vmm.transmittedBytes) B (dropped \(vmm.transmitDropped)), malformed \(vmm.malformedChains)")
                }
                if let host = nic.host {
                    print("  switch: forged \(host.forgedDropped), tagged \(host.taggedDropped), promiscuous \(host.promiscuousDropped), "
                          + "MAC change \(host.macChangeDropped), shaped \(host.shapingDropped) dropped")
                }
            }
        }
    }
}

/// `vmctl announce VM`: the VM's addresses, announced on its host's network now.
struct Announce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Announce a running VM's NIC addresses on its host's network (after it moved there).")
    @OptionGroup var agent: AgentOptions
    @Argument(help: "The VM's name or UUID.") var vm: String

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            _ = try await client.announceVMNetwork(path: .init(vm: vm)).noContent
        }
    }
}
