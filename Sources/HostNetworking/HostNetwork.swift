public import Hypervisor
internal import SystemSupport
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// This host's virtual switches made real in the kernel of its network namespace, and the ports
/// of the VMs it runs (docs/NETWORKING.md):
///
/// - each VLAN of each virtual switch is a Linux bridge (VLAN isolation by separate bridges);
/// - each VM NIC is a TAP port of its port group's bridge; the VMM gets the TAP's descriptor;
/// - the port group's security policy is nftables bridge-family rules per port;
/// - its traffic shaping is `tbf` on an IFB the port's traffic is redirected through;
/// - the uplink, with its 802.1Q tags, is an ``UplinkTrunk`` in this process, when it owns the switch.
///
/// Everything is safe to call from any thread; calls are serialized.
public final class HostNetwork: Sendable {
    private struct State {
        var configuration = NetworkConfiguration()
        var ports: [String: PortStatus] = [:]
        var trunks: [String: UplinkTrunk] = [:]
        /// Ownership locks of the switches whose uplinks this process runs.
        var locks: [String: OwnedDescriptor] = [:]
        var stopped = false
    }

    public let commands: NetworkCommands
    private let lockDirectory: String
    private let state = Mutex(State())
    /// Serializes changes (they run commands; state reads do not wait for them).
    private let changes = Mutex(())
    private let ownershipWatch = Mutex<NativeThread?>(nil)

    /// - Parameter lockDirectory: Where the switch ownership locks live (shared by every process
    ///   that runs VMs on this host).
    public init(commands: NetworkCommands = NetworkCommands(), lockDirectory: String = "/run/vmfs/vswitch") {
        self.commands = commands
        self.lockDirectory = lockDirectory
    }

    public var configuration: NetworkConfiguration { state.withLock { $0.configuration } }
    public var ports: [PortStatus] { state.withLock { Array($0.ports.values) }.sorted { $0.name < $1.name } }

    /// The uplink each switch uses now (nil: none up, or another process runs it).
    public var activeUplinks: [String: String] {
        state.withLock { s in s.trunks.compactMapValues { $0.activeUplink } }
    }

    /// Names among `portGroups` that this host does not have (a VM needing them cannot run here).
    public func missingPortGroups(_ portGroups: [String]) -> [String] {
        let configuration = configuration
        var missing: [String] = []
        for name in portGroups where configuration.portGroup(named: name) == nil && !missing.contains(name) { missing.append(name) }
        return missing
    }

    // MARK: Configuration

    /// Makes the kernel match `configuration`: the rules table, a bridge per (switch, VLAN) in
    /// use, the policies and shaping of connected ports, and the uplinks of the switches this
    /// process owns. Bridges of switches and VLANs no longer configured are removed when no
    /// port is on them.
    ///
    /// - Throws: ``NetworkError``: invalid configuration, missing tools, no permission.
    public func apply(_ configuration: NetworkConfiguration) throws(NetworkError) {
        try configuration.validate()
        try changes.withLock { (_) throws(NetworkError) in
            try commands.run(.nft, ["-f", "-"], input: PortRules.tableScript, purpose: "creating the virtual switch rules table")
            let previous = self.configuration
            let bridges = Self.bridges(of: configuration)
            for (bridge, (mtu, hub)) in bridges.sorted(by: { $0.key < $1.key }) {
                try ensureBridge(bridge, mtu: mtu, hub: hub)
            }
            state.withLock { $0.configuration = configuration }
            // Ports follow their port group's policies.
            for port in ports {
                guard let group = configuration.portGroup(named: port.portGroup) else { continue }
                try installRules(port, security: group.security)
                try applyShaping(group.shaping, port: port.name)
            }
            // Uplinks: restarted where a switch's uplinks or VLANs changed.
            for entry in configuration.virtualSwitches where Self.trunkShape(entry, previous) != Self.trunkShape(entry, configuration) {
                stopTrunk(entry.name)
            }
            for entry in previous.virtualSwitches where configuration.virtualSwitch(named: entry.name) == nil { stopTrunk(entry.name) }
            startOwnedTrunks()
            removeStaleBridges(keeping: Set(bridges.keys))
        }
        startOwnershipWatch()
    }

    /// The bridges `configuration` needs: MTU, and whether one is a hub (a port group on it
    /// allows promiscuous mode: every frame floods to every port, filtered per port).
    static func bridges(of configuration: NetworkConfiguration) -> [String: (mtu: Int, hub: Bool)] {
        var bridges: [String: (mtu: Int, hub: Bool)] = [:]
        for group in configuration.portGroups {
            guard let owner = configuration.virtualSwitch(named: group.virtualSwitch) else { continue }
            let name = InterfaceNames.bridge(switch: owner.name, vlan: group.vlan)
            bridges[name] = (owner.mtu, (bridges[name]?.hub ?? false) || group.security.allowPromiscuous)
        }
        return bridges
    }

    /// What a switch's uplink depends on: its uplinks and VLANs.
    private static func trunkShape(_ entry: VirtualSwitch, _ configuration: NetworkConfiguration) -> [String] {
        guard let current = configuration.virtualSwitch(named: entry.name) else { return [] }
        let vlans = Set(configuration.portGroups.filter { $0.virtualSwitch == entry.name }.map(\.vlan)).sorted()
        return current.uplinks + ["|"] + vlans.map(String.init) + ["mtu \(current.mtu)"]
    }

    private func ensureBridge(_ bridge: String, mtu: Int, hub: Bool) throws(NetworkError) {
        let purpose = "creating bridge \(bridge)"
        if !HostInterfaces.exists(bridge) {
            try commands.run(.ip, ["link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"], purpose: purpose)
        }
        // Ageing 0 makes the bridge flood every frame (a hub) for promiscuous port groups.
        try commands.run(.ip, ["link", "set", bridge, "mtu", "\(mtu)", "type", "bridge", "ageing_time", hub ? "0" : "30000"], purpose: purpose)
        try commands.run(.ip, ["link", "set", bridge, "up"], purpose: purpose)
    }

    private func removeStaleBridges(keeping wanted: Set<String>) {
        guard let output = try? commands.run(.ip, ["-j", "link", "show", "type", "bridge"], purpose: "listing bridges"),
              let links = try? JSONDecoderShim.links(output) else { return }
        let busy = Set(ports.map(\.bridge))
        for link in links where link.hasPrefix("vb") && InterfaceNames.isOwn(link) && !wanted.contains(link) && !busy.contains(link) {
            _ = try? commands.run(.ip, ["link", "del", link], purpose: "removing bridge \(link)")
        }
    }

    // MARK: Uplinks

    /// Starts the uplink of every switch with uplinks whose ownership this process has or can take.
    private func startOwnedTrunks() {
        let configuration = configuration
        for entry in configuration.virtualSwitches where !entry.uplinks.isEmpty {
            guard state.withLock({ $0.trunks[entry.name] == nil && !$0.stopped }) else { continue }
            let lock = state.withLock { $0.locks[entry.name] } ?? (try? SwitchOwnership.tryAcquire(directory: lockDirectory, switch: entry.name)) ?? nil
            guard let lock else { continue }
            state.withLock { $0.locks[entry.name] = lock }
            let vlans = Set(configuration.portGroups.filter { $0.virtualSwitch == entry.name }.map(\.vlan)).sorted()
            var legs: [UplinkTrunk.Leg] = []
            for vlan in vlans {
                let name = InterfaceNames.trunk(switch: entry.name, vlan: vlan)
                let fd = cvmfs_tap_create(name, 0)
                guard fd >= 0 else { continue }
                let leg = UplinkTrunk.Leg(vlan: vlan, name: name, tap: OwnedDescriptor(fd))
                let bridge = InterfaceNames.bridge(switch: entry.name, vlan: vlan)
                _ = cvmfs_set_nonblocking(fd)
                guard (try? commands.run(.ip, ["link", "set", name, "master", bridge, "mtu", "\(entry.mtu)", "up"],
                                         purpose: "attaching the trunk port \(name)")) != nil else { continue }
                legs.append(leg)
            }
            guard let trunk = try? UplinkTrunk(switchName: entry.name, uplinks: entry.uplinks, legs: legs),
                  (try? trunk.start()) != nil else { continue }
            state.withLock { $0.trunks[entry.name] = trunk }
        }
    }

    private func stopTrunk(_ name: String) {
        let trunk = state.withLock { s -> UplinkTrunk? in
            defer {
                s.trunks[name] = nil
                s.locks[name] = nil
            }
            return s.trunks[name]
        }
        trunk?.stop()
    }

    /// Checks twice a second for switches whose owner went away, and takes them over.
    private func startOwnershipWatch() {
        ownershipWatch.withLock { watch in
            guard watch == nil else { return }
            watch = try? NativeThread(name: "vswitch-owner") { [weak self] in
                while let self, !self.state.withLock({ $0.stopped }) {
                    let running = Set(self.state.withLock { $0.trunks.keys })
                    let needed = self.configuration.virtualSwitches.contains { !$0.uplinks.isEmpty && !running.contains($0.name) }
                    if needed { self.changes.withLock { _ in self.startOwnedTrunks() } }
                    MonotonicClock.sleep(milliseconds: 500)
                }
            }
        }
    }

    /// Frames each switch's uplink moved and dropped (switches whose uplink this process runs).
    public var uplinkCounters: [String: (toUplink: UInt64, fromUplink: UInt64, dropped: UInt64)] {
        state.withLock { s in
            s.trunks.mapValues { trunk in
                let c = trunk.statistics
                return (c.toUplink, c.fromUplink, c.droppedFromUplink + c.droppedToUplink)
            }
        }
    }

    /// Stops the uplinks and lets another process take them over. With `removingPorts`, the ports
    /// this object made go too (`vmctl run` at its end); the agent leaves them to its running VMs.
    public func shutdown(removingPorts: Bool) {
        state.withLock { $0.stopped = true }
        ownershipWatch.withLock { $0 }?.join()
        for name in state.withLock({ Array($0.trunks.keys) }) { stopTrunk(name) }
        if removingPorts { for port in ports { disconnect(port: port.name) } }
        state.withLock { $0.locks.removeAll() }
    }

    // MARK: Ports

    /// Makes the port of NIC `nic` of VM `vm` on `portGroup`: a TAP device (with a virtio-net
    /// header) on the port group's bridge, its policy rules and shaping.
    ///
    /// - Throws: ``NetworkError/Code/notFound`` for an unknown port group (naming those there are),
    ///   ``NetworkError/Code/nameClash`` when the port's name is taken,
    ///   ``NetworkError/Code/permissionDenied`` without CAP_NET_ADMIN.
    public func connect(vm: String, nic: Int, portGroup: String, mac: MACAddress) throws(NetworkError) -> ConnectedPort {
        try changes.withLock { (_) throws(NetworkError) -> ConnectedPort in
            let configuration = configuration
            guard let group = configuration.portGroup(named: portGroup),
                  let owner = configuration.virtualSwitch(named: group.virtualSwitch) else {
                let known = configuration.portGroups.map { "'\($0.name)'" }.joined(separator: ", ")
                throw NetworkError(.notFound, "port group '\(portGroup)' does not exist on this host (port groups: \(known.isEmpty ? "none" : known))")
            }
            let name = InterfaceNames.port(vm: vm, nic: nic)
            let bridge = InterfaceNames.bridge(switch: owner.name, vlan: group.vlan)
            let fd = cvmfs_tap_create(name, 1)
            guard fd >= 0 else { throw Self.tapError(name, errno: -fd) }
            // Every record on a port carries the 12-byte header (docs/NETWORKING.md), from the start.
            let sized = cvmfs_tap_set_vnet_header_size(fd, 12)
            guard sized == 0 else {
                close(fd)
                throw NetworkError(.failed, "TUNSETVNETHDRSZ on \(name): errno \(-sized)")
            }
            let status = PortStatus(name: name, vm: vm, nic: nic, portGroup: portGroup, configuredMAC: mac.description,
                                    effectiveMAC: mac.description, bridge: bridge)
            do throws(NetworkError) {
                try commands.run(.ip, ["link", "set", name, "master", bridge, "mtu", "\(owner.mtu)", "up"], purpose: "attaching port \(name) to \(bridge)")
                try installRules(status, security: group.security)
                try applyShaping(group.shaping, port: name)
            } catch {
                close(fd)
                removeArtifacts(of: name)
                throw error
            }
            state.withLock { $0.ports[name] = status }
            return ConnectedPort(status: status, descriptor: fd)
        }
    }

    /// Takes back the port of a running VM (an agent adopting VMMs after its restart): the TAP
    /// exists, held by the VMM; its rules and shaping are made again.
    public func adopt(vm: String, nic: Int, portGroup: String, mac: MACAddress) throws(NetworkError) -> PortStatus {
        try changes.withLock { (_) throws(NetworkError) -> PortStatus in
            let name = InterfaceNames.port(vm: vm, nic: nic)
            guard HostInterfaces.exists(name) else { throw NetworkError(.notFound, "the port \(name) of VM \(vm) NIC \(nic) is gone") }
            let configuration = configuration
            guard let group = configuration.portGroup(named: portGroup), let owner = configuration.virtualSwitch(named: group.virtualSwitch) else {
                throw NetworkError(.notFound, "port group '\(portGroup)' of VM \(vm) NIC \(nic) is no longer configured")
            }
            let status = PortStatus(name: name, vm: vm, nic: nic, portGroup: portGroup, configuredMAC: mac.description,
                                    effectiveMAC: state.withLock { $0.ports[name]?.effectiveMAC } ?? mac.description,
                                    bridge: InterfaceNames.bridge(switch: owner.name, vlan: group.vlan))
            try installRules(status, security: group.security)
            try applyShaping(group.shaping, port: name)
            state.withLock { $0.ports[name] = status }
            return status
        }
    }

    /// Forgets a port: its rules and shaper go (the TAP goes with the VMM's descriptor).
    public func disconnect(port name: String) {
        changes.withLock { _ in
            state.withLock { $0.ports[name] = nil }
            removeArtifacts(of: name)
        }
    }

    /// The guest of `port` uses address `mac` now: with MAC changes allowed the rules follow it;
    /// rejected, the port receives nothing until the guest goes back to its configured address.
    public func setEffectiveMAC(port name: String, mac: MACAddress) {
        changes.withLock { _ in
            guard var status = state.withLock({ $0.ports[name] }), let group = configuration.portGroup(named: status.portGroup) else { return }
            status.effectiveMAC = mac.description
            state.withLock { $0.ports[name] = status }
            try? installRules(status, security: group.security)
        }
    }

    /// What the host counted for `port`.
    public func counters(port name: String) -> PortCounters {
        var counters = PortCounters()
        if let output = try? commands.run(.nft, ["-j", "list", "counters", "table", "bridge", PortRules.table], purpose: "reading counters") {
            let values = JSONNumbers.counters(in: output)
            counters.forgedDropped = values[PortRules.counterName(name, .forged)] ?? 0
            counters.taggedDropped = values[PortRules.counterName(name, .tagged)] ?? 0
            counters.promiscuousDropped = values[PortRules.counterName(name, .promiscuous)] ?? 0
            counters.macChangeDropped = values[PortRules.counterName(name, .blocked)] ?? 0
        }
        counters.shapingDropped = TrafficShaper(commands: commands).drops(port: name)
        if let link = HostInterfaces.link(name, commands: commands) {
            counters.fromGuestPackets = link.stats64?.rx?.packets ?? 0
            counters.fromGuestBytes = link.stats64?.rx?.bytes ?? 0
            counters.toGuestPackets = link.stats64?.tx?.packets ?? 0
            counters.toGuestBytes = link.stats64?.tx?.bytes ?? 0
            counters.toGuestDropped = link.stats64?.tx?.dropped ?? 0
        }
        return counters
    }

    private func installRules(_ port: PortStatus, security: SecurityPolicy) throws(NetworkError) {
        let rules = PortRules.Port(name: port.name, configuredMAC: port.configuredMAC, effectiveMAC: port.effectiveMAC, security: security)
        try commands.run(.nft, ["-f", "-"], input: PortRules.install(rules), purpose: "installing the security policy of port \(port.name)")
    }

    private func applyShaping(_ shaping: TrafficShaping?, port: String) throws(NetworkError) {
        let shaper = TrafficShaper(commands: commands)
        if let shaping { try shaper.apply(shaping, port: port) } else { shaper.remove(port: port) }
    }

    private func removeArtifacts(of port: String) {
        TrafficShaper(commands: commands).remove(port: port)
        _ = try? commands.run(.nft, ["-f", "-"], input: PortRules.remove(port), purpose: "removing the rules of port \(port)")
    }

    static func tapError(_ name: String, errno: Int32) -> NetworkError {
        switch errno {
        case EEXIST:
            NetworkError(.nameClash, "cannot create TAP device \(name): an interface of that name exists (another VM's port, or a leftover: `ip link del \(name)`)")
        case EPERM, EACCES:
            NetworkError(.permissionDenied, "creating TAP device \(name) needs CAP_NET_ADMIN and access to /dev/net/tun (run as root)")
        case ENOENT, ENODEV:
            NetworkError(.unavailable, "cannot create TAP device \(name): /dev/net/tun is missing (the kernel needs TUN/TAP)")
        default:
            NetworkError(.failed, "cannot create TAP device \(name): \(String(cString: strerror(errno))) (errno \(errno))")
        }
    }
}
