import FoundationEssentials
import Glibc
import Hypervisor
import HostNetworking
import VMManagement

/// The virtual switches of a VM run by `vmctl run` without an agent: read from a file, made in the
/// kernel (idempotent: switches other runs made stay as they are), a port per NIC for the run's
/// duration. The uplinks run in the first process that uses a switch and pass to another when it ends.
final class LocalNetwork: @unchecked Sendable {
    static let defaultConfiguration = "/etc/vmfs/network.toml"

    private let configurationPath: String?
    private var host: HostNetwork?

    init(configurationPath: String?) {
        self.configurationPath = configurationPath
    }

    /// Ports for the NICs of `definition`, in order.
    func connect(_ definition: VirtualMachineDefinition) throws(VMError) -> [NetworkInterfaceConfiguration] {
        let path = configurationPath ?? Self.defaultConfiguration
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VMError(.invalidArgument, "VM '\(definition.name)' has NICs, and the network configuration \(path) cannot be read "
                          + "(give one with --network-config)")
        }
        let host = HostNetwork()
        self.host = host
        var nics: [NetworkInterfaceConfiguration] = []
        do {
            let configuration = try NetworkConfiguration(tomlText: String(decoding: data, as: UTF8.self), source: path)
            try host.apply(configuration)
            let identity = definition.uuid ?? "\(definition.name)"
            for (index, nic) in definition.networkInterfaces.enumerated() {
                let port = try host.connect(vm: identity, nic: index, portGroup: nic.portGroup, mac: nic.macAddress)
                do {
                    nics.append(NetworkInterfaceConfiguration(macAddress: nic.macAddress, port: try NetworkPort(tapDescriptor: port.descriptor),
                                                              connected: nic.startConnected) { [weak host] event in
                        if case .macAddressChanged(let interface, let mac) = event {
                            host?.setEffectiveMAC(port: InterfaceNames.port(vm: identity, nic: interface), mac: mac)
                        }
                    })
                } catch {
                    throw NetworkError(.failed, "ethernet\(index): \(error)")
                }
            }
        } catch {
            throw VMError(.invalidArgument, "VM '\(definition.name)': \(error)")
        }
        return nics
    }

    /// Removes the run's ports and hands the uplinks it ran to another process.
    func close() { host?.shutdown(removingPorts: true) }
}
