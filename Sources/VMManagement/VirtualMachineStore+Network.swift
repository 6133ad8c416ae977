import VMFSCore
public import Hypervisor

extension VirtualMachineStore {
    /// The MAC addresses of every VM's NICs on the volume (configurations that cannot be read are
    /// skipped: they name no address anyone uses).
    public func macAddressesInUse() -> Set<MACAddress> {
        guard let files = try? volume.list() else { return [] }
        var addresses: Set<MACAddress> = []
        for file in files where file.name.hasSuffix(".vmx") {
            guard let text = try? readText(file.name), let vmx = try? VMXFile(parsing: text, fileName: file.name),
                  let nics = try? NetworkInterfaceDefinition.read(from: VMXFields(file: vmx, fileName: file.name)) else { continue }
            for nic in nics { addresses.insert(nic.macAddress) }
        }
        return addresses
    }

    /// NICs on `portGroups` with newly generated addresses, none of them in `taken` (the
    /// addresses of the other VMs on the volume) and no two alike. They never change afterwards.
    ///
    /// - Throws: ``VMError/Code/invalidArgument`` for too many NICs or an unusable port group name.
    public static func generateNetworkInterfaces(portGroups: [String], avoiding taken: Set<MACAddress>) throws(VMError) -> [NetworkInterfaceDefinition] {
        guard portGroups.count <= NetworkInterfaceDefinition.maximumCount else {
            throw VMError(.invalidArgument, "\(portGroups.count) NICs; a VM has at most \(NetworkInterfaceDefinition.maximumCount)")
        }
        var used = taken
        var nics: [NetworkInterfaceDefinition] = []
        for name in portGroups {
            guard !name.isEmpty, name.utf8.count <= 64, name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw VMError(.invalidArgument, "port group name '\(name)' must be 1–64 printable characters")
            }
            var mac = MACAddress.random()
            while used.contains(mac) { mac = MACAddress.random() }
            used.insert(mac)
            nics.append(NetworkInterfaceDefinition(portGroup: name, macAddress: mac))
        }
        return nics
    }
}
