internal import Hypervisor
internal import VMXProtocol
internal import SystemSupport

/// The NICs of a `configure` message: each TAP descriptor becomes the VM's ``NetworkPort``.
enum NetworkInterfaces {
    /// The NIC configurations of `specifications`, taking ownership of their TAP descriptors.
    ///
    /// - Throws: ``VMXProtocolError/Code/malformed`` naming the entry: a descriptor index outside
    ///   the frame, an address that is not unicast, a descriptor that is not a TAP with a
    ///   virtio-net header; too many NICs.
    static func configurations(_ specifications: [NetworkInterfaceSpecification], descriptors: [OwnedDescriptor],
                               handler: @escaping @Sendable (NetworkInterfaceEvent) -> Void) throws(VMXProtocolError) -> [NetworkInterfaceConfiguration] {
        guard specifications.count <= VirtualMachineConfiguration.maximumNetworkInterfaceCount else {
            throw VMXProtocolError(.malformed, "\(specifications.count) NICs; at most \(VirtualMachineConfiguration.maximumNetworkInterfaceCount)")
        }
        var nics: [NetworkInterfaceConfiguration] = []
        for (index, spec) in specifications.enumerated() {
            guard descriptors.indices.contains(spec.portDescriptor) else {
                throw VMXProtocolError(.malformed, "networkInterfaces[\(index)].portDescriptor names descriptor \(spec.portDescriptor); \(descriptors.count) arrived")
            }
            guard let mac = MACAddress(spec.macAddress), mac.isUsableUnicast else {
                throw VMXProtocolError(.malformed, "networkInterfaces[\(index)].macAddress '\(spec.macAddress.prefix(40))' is not a unicast MAC address")
            }
            let raw = descriptors[spec.portDescriptor].release()
            guard raw >= 0 else {
                throw VMXProtocolError(.malformed, "networkInterfaces[\(index)].portDescriptor \(spec.portDescriptor) is used twice")
            }
            do {
                nics.append(NetworkInterfaceConfiguration(macAddress: mac, port: try NetworkPort(tapDescriptor: raw),
                                                          connected: spec.connected, eventHandler: handler))
            } catch {
                throw VMXProtocolError(.malformed, "networkInterfaces[\(index)]: \(error)")
            }
        }
        return nics
    }

    /// The counters of a status report.
    static func counters(_ statistics: [NetworkInterfaceStatistics]) -> [NetworkCounters] {
        statistics.map {
            NetworkCounters(macAddress: $0.macAddress?.description ?? "", linkUp: $0.linkUp, receivedPackets: $0.receivedPackets,
                            receivedBytes: $0.receivedBytes, receiveDropped: $0.receiveDropped, receiveFiltered: $0.receiveFiltered,
                            transmittedPackets: $0.transmittedPackets, transmittedBytes: $0.transmittedBytes,
                            transmitDropped: $0.transmitDropped, malformedChains: $0.malformedChains, announcements: $0.announcements)
        }
    }

    /// The report of a NIC event.
    static func report(_ event: NetworkInterfaceEvent) -> NetworkEventReport {
        switch event {
        case .macAddressChanged(let interface, let mac):
            NetworkEventReport(interface: interface, kind: .macAddressChanged, macAddress: mac.description)
        case .receiveModeChanged(let interface, let promiscuous, let allMulticast):
            NetworkEventReport(interface: interface, kind: .receiveModeChanged, promiscuous: promiscuous, allMulticast: allMulticast)
        }
    }
}
