/// The VM's NICs seen from the VMM: counters, link state, announcements.
extension VirtualMachine {
    static func validateNetworkInterfaces(_ configuration: VirtualMachineConfiguration) throws(HypervisorError) {
        let nics = configuration.networkInterfaces
        guard nics.count <= VirtualMachineConfiguration.maximumNetworkInterfaceCount else {
            throw HypervisorError(.invalidConfiguration, "\(nics.count) NICs; at most \(VirtualMachineConfiguration.maximumNetworkInterfaceCount) are supported")
        }
        var seen: Set<MACAddress> = []
        for (index, nic) in nics.enumerated() {
            guard nic.macAddress.isUsableUnicast else {
                throw HypervisorError(.invalidConfiguration, "NIC \(index) has MAC address \(nic.macAddress), which is not a unicast address")
            }
            guard seen.insert(nic.macAddress).inserted else {
                throw HypervisorError(.invalidConfiguration, "NIC \(index) has MAC address \(nic.macAddress), which an earlier NIC has too")
            }
        }
    }

    /// Per-NIC counters, in configuration order.
    public var networkStatistics: [NetworkInterfaceStatistics] { networkInterfaceDevices.map(\.counters) }

    /// Announces every NIC's address on its host network at once and over the next half second
    /// (RARP, gratuitous ARP when the guest's IPv4 address is known): call it when the VM resumes
    /// on another host, so switches learn its new port without waiting for the guest to speak.
    public func announceNetwork() {
        for device in networkInterfaceDevices { device.announce() }
    }

    /// Connects or disconnects NIC `index`'s link; the guest's driver sees the status change.
    ///
    /// - Throws: ``HypervisorError/Code/invalidConfiguration`` when there is no such NIC.
    public func setNetworkLink(_ index: Int, connected: Bool) throws(HypervisorError) {
        let devices = networkInterfaceDevices
        guard devices.indices.contains(index) else {
            throw HypervisorError(.invalidConfiguration, "NIC \(index) does not exist; the VM has \(devices.count)")
        }
        devices[index].setLink(up: connected)
    }
}
