/// One virtual NIC of a VM: a virtio-net device on PCI, backed by a ``NetworkPort`` on the host.
public struct NetworkInterfaceConfiguration: Sendable {
    /// The NIC's address (the `.vmx`'s `ethernetN.generatedAddress`): unicast, not zero.
    public var macAddress: MACAddress
    /// The host end (a TAP device, normally).
    public var port: NetworkPort
    /// Whether the link is up when the VM starts (`ethernetN.startConnected`).
    public var connected: Bool
    /// Told when the driver changes the NIC's address or receive mode (on a device thread; keep it
    /// short). The host agent adjusts what the virtual switch lets through.
    public var eventHandler: (@Sendable (NetworkInterfaceEvent) -> Void)?

    public init(macAddress: MACAddress, port: NetworkPort, connected: Bool = true,
                eventHandler: (@Sendable (NetworkInterfaceEvent) -> Void)? = nil) {
        self.macAddress = macAddress
        self.port = port
        self.connected = connected
        self.eventHandler = eventHandler
    }
}

/// Something the guest's driver did to its NIC.
public enum NetworkInterfaceEvent: Sendable, Equatable {
    /// The driver set a new address (configuration space or VIRTIO_NET_CTRL_MAC_ADDR_SET), or a
    /// reset restored the configured one.
    case macAddressChanged(interface: Int, MACAddress)
    /// The driver asked for promiscuous or all-multicast reception (VIRTIO_NET_CTRL_RX).
    case receiveModeChanged(interface: Int, promiscuous: Bool, allMulticast: Bool)
}

/// Counters of one virtual NIC, as the VMM sees them.
public struct NetworkInterfaceStatistics: Sendable, Equatable {
    /// Frames delivered to the guest, and their bytes (without the virtio-net header).
    public var receivedPackets: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    /// Frames from the host dropped: larger than the guest's buffer, an offload the driver did
    /// not negotiate, or the link was down.
    public var receiveDropped: UInt64 = 0
    /// Frames from the host not for this NIC's address or receive mode.
    public var receiveFiltered: UInt64 = 0
    /// Frames the guest sent that went to the host, and their bytes.
    public var transmittedPackets: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    /// Frames the guest sent that were dropped: malformed header, an offload it did not
    /// negotiate, refused by the host, or the link was down.
    public var transmitDropped: UInt64 = 0
    /// Descriptor chains that broke the rules (wrong direction, outside guest memory, too long,
    /// loops): returned to the driver with nothing done.
    public var malformedChains: UInt64 = 0
    /// Announcement frames (RARP, gratuitous ARP) the VMM sent for the guest.
    public var announcements: UInt64 = 0
    /// The address the driver uses now.
    public var macAddress: MACAddress?
    public var linkUp = false

    public init() {}
}
