internal import Synchronization
internal import SystemSupport
/// The control queue: receive mode, MAC address and filter tables, announcement acknowledgements.
extension VirtioNet {
    /// Largest command accepted: class, command and two full MAC tables.
    static let maximumCommand = 2 + 2 * (4 + VirtioNetProtocol.macTableCapacity * 6)

    func serveControlQueue() {
        guard let transport else { return }
        var completions: [(head: UInt16, written: UInt32)] = []
        for entry in transport.takeAvailable(queue: VirtioNetProtocol.controlQueue, limit: 64) {
            switch entry {
            case .chain(let chain):
                completions.append((chain.head, execute(chain)))
            case .malformed(let head, _):
                count { $0.malformedChains += 1 }
                completions.append((head, 0))
            }
        }
        transport.complete(queue: VirtioNetProtocol.controlQueue, completions)
    }

    /// Runs one command; returns the bytes written (1 for the ack, 0 when the chain was unusable).
    private func execute(_ chain: DescriptorChain) -> UInt32 {
        // Command bytes in the device-readable descriptors, then one device-writable ack byte.
        guard chain.descriptors.count >= 2, let last = chain.descriptors.last, last.isDeviceWritable, last.length >= 1,
              let ack = memory.hostPointer(at: last.address, count: 1),
              let command = ChainBuffers(DescriptorChain(head: chain.head, descriptors: chain.descriptors.dropLast()),
                                         writable: false, memory: memory, limit: Self.maximumCommand),
              command.total >= 2 else {
            count { $0.malformedChains += 1 }
            return 0
        }
        let bytes = command.gather(offset: 0, count: command.total)
        let ok = perform(class: bytes[0], command: bytes[1], data: Array(bytes.dropFirst(2)))
        ack.storeBytes(of: ok ? VirtioNetProtocol.ackOK : VirtioNetProtocol.ackError, as: UInt8.self)
        return 1
    }

    private func perform(class kind: UInt8, command: UInt8, data: [UInt8]) -> Bool {
        typealias P = VirtioNetProtocol
        let features = settings.withLock { $0.features }
        switch (kind, command) {
        case (P.controlReceiveMode, P.commandPromiscuous), (P.controlReceiveMode, P.commandAllMulticast):
            guard features & P.featureControlReceiveMode != 0, data.count == 1, data[0] <= 1 else { return false }
            let mode = settings.withLock { s -> (Bool, Bool) in
                if command == P.commandPromiscuous { s.filter.promiscuous = data[0] == 1 } else { s.filter.allMulticast = data[0] == 1 }
                return (s.filter.promiscuous, s.filter.allMulticast)
            }
            eventHandler?(.receiveModeChanged(interface: index, promiscuous: mode.0, allMulticast: mode.1))
            return true
        case (P.controlMAC, P.commandMACAddressSet):
            guard features & P.featureControlMACAddress != 0, let address = MACAddress(bytes: data), address.isUsableUnicast else { return false }
            let changed = settings.withLock { s -> Bool in
                defer { s.mac = address }
                return s.mac != address
            }
            if changed { eventHandler?(.macAddressChanged(interface: index, address)) }
            return true
        case (P.controlMAC, P.commandMACTableSet):
            guard features & P.featureControlReceiveMode != 0, let (unicast, rest) = Self.macTable(data[...]),
                  let (multicast, end) = Self.macTable(rest), end.isEmpty else { return false }
            settings.withLock { s in
                s.filter.unicast = Set(unicast)
                s.filter.multicast = Set(multicast)
            }
            return true
        case (P.controlAnnounce, P.commandAnnounceAck):
            guard features & P.featureGuestAnnounce != 0, data.isEmpty else { return false }
            settings.withLock { $0.announceRequested = false }
            return true
        default:
            return false
        }
    }

    /// `struct virtio_net_ctrl_mac`: le32 entries, then entries × 6 bytes; nil when it does not
    /// fit or holds more than the table keeps.
    private static func macTable(_ data: ArraySlice<UInt8>) -> ([MACAddress], ArraySlice<UInt8>)? {
        guard data.count >= 4 else { return nil }
        let start = data.startIndex
        let entries = Int(UInt32(data[start]) | UInt32(data[start + 1]) << 8 | UInt32(data[start + 2]) << 16 | UInt32(data[start + 3]) << 24)
        guard entries <= VirtioNetProtocol.macTableCapacity, data.count - 4 >= entries * 6 else { return nil }
        var addresses: [MACAddress] = []
        for i in 0..<entries {
            let offset = start + 4 + i * 6
            if let address = MACAddress(bytes: data[offset..<(offset + 6)]) { addresses.append(address) }
        }
        return (addresses, data[(start + 4 + entries * 6)...])
    }
}
