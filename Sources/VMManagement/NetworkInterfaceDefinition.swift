public import Hypervisor

/// A VM's NIC as its `.vmx` describes it, with VMware's keys:
///
/// | key | meaning |
/// |---|---|
/// | `ethernetN.present` | `TRUE` (`FALSE` skips the entry) |
/// | `ethernetN.virtualDev` | `virtio` (the only device this VMM has) |
/// | `ethernetN.networkName` | the port group, by name (the same name on every host lets the VM move) |
/// | `ethernetN.addressType` | `generated` (at create, once; never changed afterwards) or `static` |
/// | `ethernetN.generatedAddress` / `ethernetN.address` | the MAC address, for each type |
/// | `ethernetN.startConnected` | whether the link is up at power-on (default `TRUE`) |
public struct NetworkInterfaceDefinition: Sendable, Equatable {
    /// How the address was chosen.
    public enum AddressType: String, Sendable, Equatable {
        /// Generated when the NIC was created and kept in `generatedAddress` for good.
        case generated
        /// Set by the administrator (`address`).
        case `static`
    }

    public var portGroup: String
    public var macAddress: MACAddress
    public var addressType: AddressType
    public var startConnected: Bool

    public init(portGroup: String, macAddress: MACAddress, addressType: AddressType = .generated, startConnected: Bool = true) {
        self.portGroup = portGroup
        self.macAddress = macAddress
        self.addressType = addressType
        self.startConnected = startConnected
    }

    /// Most NICs a VM has.
    public static let maximumCount = VirtualMachineConfiguration.maximumNetworkInterfaceCount

    /// The `.vmx` entries of NIC `index`.
    func write(into file: inout VMXFile, index: Int) {
        let prefix = "ethernet\(index)"
        file["\(prefix).present"] = "TRUE"
        file["\(prefix).virtualDev"] = "virtio"
        file["\(prefix).networkName"] = portGroup
        file["\(prefix).addressType"] = addressType.rawValue
        file["\(prefix).\(addressType == .generated ? "generatedAddress" : "address")"] = macAddress.description
        file["\(prefix).startConnected"] = startConnected ? "TRUE" : "FALSE"
    }

    /// The NICs of a `.vmx`: `ethernet0`, `ethernet1`, … up to the first index with no entry.
    ///
    /// - Throws: ``VMError/Code/malformedConfiguration`` naming the file, the key and the value.
    static func read(from fields: VMXFields) throws(VMError) -> [NetworkInterfaceDefinition] {
        let file = fields.file
        var nics: [NetworkInterfaceDefinition] = []
        var seen: [MACAddress: Int] = [:]
        for index in 0...maximumCount {
            let prefix = "ethernet\(index)"
            guard file["\(prefix).present"] != nil || file["\(prefix).networkName"] != nil else { break }
            if file["\(prefix).present"]?.uppercased() == "FALSE" { continue }
            guard index < maximumCount else {
                throw VMError(.malformedConfiguration, "\(fields.fileName): '\(prefix)' is one NIC too many; a VM has at most \(maximumCount) (ethernet0…ethernet\(maximumCount - 1))")
            }
            if let device = file["\(prefix).virtualDev"], device.lowercased() != "virtio" {
                throw VMError(.malformedConfiguration, "\(fields.fileName): '\(prefix).virtualDev' = \(fields.quoted(device)); this host's VMM has only 'virtio'")
            }
            let portGroup = try fields.required("\(prefix).networkName")
            let typeText = (file["\(prefix).addressType"] ?? "generated").lowercased()
            guard let type = AddressType(rawValue: typeText == "vpx" ? "generated" : typeText) else {
                throw VMError(.malformedConfiguration, "\(fields.fileName): '\(prefix).addressType' = \(fields.quoted(typeText)) is neither 'generated' nor 'static'")
            }
            let key = "\(prefix).\(type == .generated ? "generatedAddress" : "address")"
            let text = try fields.required(key)
            guard let mac = MACAddress(text), mac.isUsableUnicast else {
                throw VMError(.malformedConfiguration, "\(fields.fileName): '\(key)' = \(fields.quoted(text)) is not a unicast MAC address (aa:bb:cc:dd:ee:ff)")
            }
            if let other = seen[mac] {
                throw VMError(.malformedConfiguration, "\(fields.fileName): '\(key)' = \(mac) is also the address of ethernet\(other)")
            }
            seen[mac] = index
            let connected = (file["\(prefix).startConnected"] ?? "TRUE").uppercased()
            guard connected == "TRUE" || connected == "FALSE" else {
                throw VMError(.malformedConfiguration, "\(fields.fileName): '\(prefix).startConnected' = \(fields.quoted(connected)) is neither TRUE nor FALSE")
            }
            nics.append(NetworkInterfaceDefinition(portGroup: portGroup, macAddress: mac, addressType: type, startConnected: connected == "TRUE"))
        }
        return nics
    }
}
