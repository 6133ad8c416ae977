public import HostNetworking
internal import Hypervisor
internal import VMManagement
internal import VMXProtocol
internal import SystemSupport
#if canImport(Glibc)
internal import Glibc
#endif

/// A VM NIC as the API shows it: its settings, the host's port and both sides' counters.
public struct NICView: Sendable, Equatable {
    public var index: Int
    public var portGroup: String
    public var macAddress: String
    /// The address the guest uses now, when its VMM said.
    public var effectiveMACAddress: String?
    public var connected: Bool
    /// The host's port (TAP), while the VM runs.
    public var port: String?
    public var linkUp: Bool?
    public var vmm: VMMNetworkCounters?
    public var host: PortCounters?
}

/// What a VM's VMM counted for one NIC (see `NetworkInterfaceStatistics` in the Hypervisor).
public struct VMMNetworkCounters: Sendable, Equatable {
    public var receivedPackets: UInt64
    public var receivedBytes: UInt64
    public var receiveDropped: UInt64
    public var receiveFiltered: UInt64
    public var transmittedPackets: UInt64
    public var transmittedBytes: UInt64
    public var transmitDropped: UInt64
    public var malformedChains: UInt64
    public var announcements: UInt64

    init(_ c: NetworkCounters) {
        receivedPackets = c.receivedPackets
        receivedBytes = c.receivedBytes
        receiveDropped = c.receiveDropped
        receiveFiltered = c.receiveFiltered
        transmittedPackets = c.transmittedPackets
        transmittedBytes = c.transmittedBytes
        transmitDropped = c.transmitDropped
        malformedChains = c.malformedChains
        announcements = c.announcements
    }
}

extension ManagedVM {
    /// Makes a port for each of the VM's NICs (before its VMM starts); none when one fails.
    ///
    /// - Throws: ``AgentError`` naming the NIC and why (a port group this host lacks, no
    ///   permission, a name clash).
    func connectNetwork(_ definition: VirtualMachineDefinition) throws(AgentError) -> [ConnectedPort] {
        var ports: [ConnectedPort] = []
        for (index, nic) in definition.networkInterfaces.enumerated() {
            do {
                ports.append(try context.network.host.connect(vm: uuid, nic: index, portGroup: nic.portGroup, mac: nic.macAddress))
            } catch {
                for port in ports {
                    close(port.descriptor)
                    context.network.host.disconnect(port: port.status.name)
                }
                var failure = AgentNetwork.agentError(error)
                failure.message = "VM '\(name)' ethernet\(index): \(failure.message)"
                throw failure
            }
        }
        return ports
    }

    /// The `configure` entries of the ports, their descriptors numbered from `first`.
    func networkSpecifications(_ definition: VirtualMachineDefinition, ports: [ConnectedPort], first: Int)
        -> ([NetworkInterfaceSpecification], [Int32]) {
        var specifications: [NetworkInterfaceSpecification] = []
        for (index, (nic, port)) in zip(definition.networkInterfaces, ports).enumerated() {
            specifications.append(NetworkInterfaceSpecification(macAddress: nic.macAddress.description, portGroup: nic.portGroup,
                                                               connected: nic.startConnected, portDescriptor: first + index))
        }
        return (specifications, ports.map(\.descriptor))
    }

    /// Gives back the ports of a VM that stopped.
    func disconnectNetwork(_ ports: [String]) {
        for port in ports { context.network.host.disconnect(port: port) }
    }

    /// Ports of a VM adopted after an agent restart: the VMM holds them; rules and shaping come back.
    func adoptNetwork(_ definition: VirtualMachineDefinition) -> [String] {
        var names: [String] = []
        for (index, nic) in definition.networkInterfaces.enumerated() {
            do {
                names.append(try context.network.host.adopt(vm: uuid, nic: index, portGroup: nic.portGroup, mac: nic.macAddress).name)
            } catch {
                record(.vmNetworkAddressChanged, "VM '\(name)' ethernet\(index) could not be adopted: \(error)", severity: .warning)
            }
        }
        return names
    }

    /// What the guest did to a NIC: a new address is enforced by the switch per the port group's policy.
    func networkEvent(_ report: NetworkEventReport) {
        guard report.kind == .macAddressChanged, let text = report.macAddress, let mac = MACAddress(text) else { return }
        let port = InterfaceNames.port(vm: uuid, nic: report.interface)
        context.network.host.setEffectiveMAC(port: port, mac: mac)
        let policy = context.network.host.ports.first { $0.name == port }.flatMap { context.network.configuration.portGroup(named: $0.portGroup) }
        let outcome = policy?.security.allowMACChanges == true ? "allowed by its port group" : "its port group rejects MAC changes: inbound frames stop until it changes back"
        record(.vmNetworkAddressChanged, "VM '\(name)' ethernet\(report.interface) now uses \(mac) (\(outcome))")
    }

    /// The port groups the VM's `.vmx` connects it to.
    public func networkRequirements() throws(AgentError) -> [String] {
        try networkDefinition().networkInterfaces.map(\.portGroup)
    }

    private func networkDefinition() throws(AgentError) -> VirtualMachineDefinition {
        guard let settings = settings() else {
            throw AgentError(.storageUnavailable, "the configuration of VM '\(name)' cannot be read from volume '\(datastore.name)'")
        }
        return settings.definition
    }

    /// The VMM's status report (its counters), while it runs.
    func statusReport() throws(AgentError) -> StatusReport {
        guard let connection = state.withLock({ $0.runtime?.connection }) else {
            throw AgentError(.invalidState, "VM '\(name)' is \(power.rawValue)")
        }
        let reply = try connection.request(.statusRequest, timeoutNanoseconds: 2_000_000_000) { if case .status = $0 { true } else { false } }
        guard case .status(let report) = reply else { throw AgentError(.failed, "the VMM of '\(name)' sent no status") }
        return report
    }

    /// Announces the VM's NIC addresses on this host's network at once (RARP and gratuitous ARP
    /// from its VMM, repeated over half a second): what a migration's switchover and an HA
    /// restart call when the VM resumes here, so switches learn its new port immediately.
    public func announceNetwork() throws(AgentError) {
        guard let connection = state.withLock({ s in s.power == .running || s.power == .paused ? s.runtime?.connection : nil }) else {
            throw AgentError(.invalidState, "VM '\(name)' is \(power.rawValue); only a running VM can announce itself")
        }
        try connection.send(.announceNetwork)
        record(.vmNetworkAnnounced, "VM '\(name)' announced its addresses on this host's network")
    }

    /// The VM's NICs, with counters while it runs.
    public func nics() throws(AgentError) -> [NICView] {
        let definition = try networkDefinition()
        let status = try? statusReport()
        let host = context.network.host
        return definition.networkInterfaces.enumerated().map { index, nic in
            let portName = InterfaceNames.port(vm: uuid, nic: index)
            let port = host.ports.first { $0.name == portName }
            let counters = status?.networkInterfaces.flatMap { index < $0.count ? $0[index] : nil }
            return NICView(index: index, portGroup: nic.portGroup, macAddress: nic.macAddress.description,
                           effectiveMACAddress: counters?.macAddress ?? port?.effectiveMAC, connected: nic.startConnected,
                           port: port?.name, linkUp: counters?.linkUp, vmm: counters.map(VMMNetworkCounters.init), host: port.map { host.counters(port: $0.name) })
        }
    }
}
