/// One NIC of a VM in `configure`: its TAP arrives as a descriptor of the same frame.
public struct NetworkInterfaceSpecification: Codable, Sendable, Equatable {
    /// The address in the `.vmx` (`aa:bb:cc:dd:ee:ff`).
    public var macAddress: String
    /// The port group it is on (for reports).
    public var portGroup: String
    /// Whether the link is up at start.
    public var connected: Bool
    /// Index of the TAP descriptor (opened with IFF_VNET_HDR) among the frame's descriptors.
    public var portDescriptor: Int

    public init(macAddress: String, portGroup: String, connected: Bool, portDescriptor: Int) {
        self.macAddress = macAddress
        self.portGroup = portGroup
        self.connected = connected
        self.portDescriptor = portDescriptor
    }
}

/// `setLink` (agent → VMM): connects or disconnects one NIC's link.
public struct LinkRequest: Codable, Sendable, Equatable {
    public var interface: Int
    public var connected: Bool

    public init(interface: Int, connected: Bool) {
        self.interface = interface
        self.connected = connected
    }
}

/// `networkEvent` (VMM → agent): the guest changed a NIC's address or receive mode.
public struct NetworkEventReport: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case macAddressChanged, receiveModeChanged }

    public var interface: Int
    public var kind: Kind
    /// The address the driver uses now (macAddressChanged).
    public var macAddress: String?
    public var promiscuous: Bool?
    public var allMulticast: Bool?

    public init(interface: Int, kind: Kind, macAddress: String? = nil, promiscuous: Bool? = nil, allMulticast: Bool? = nil) {
        self.interface = interface
        self.kind = kind
        self.macAddress = macAddress
        self.promiscuous = promiscuous
        self.allMulticast = allMulticast
    }
}

/// Per-NIC counters in a ``StatusReport``.
public struct NetworkCounters: Codable, Sendable, Equatable {
    public var macAddress: String
    public var linkUp: Bool
    public var receivedPackets: UInt64
    public var receivedBytes: UInt64
    public var receiveDropped: UInt64
    public var receiveFiltered: UInt64
    public var transmittedPackets: UInt64
    public var transmittedBytes: UInt64
    public var transmitDropped: UInt64
    public var malformedChains: UInt64
    public var announcements: UInt64

    public init(macAddress: String, linkUp: Bool, receivedPackets: UInt64, receivedBytes: UInt64, receiveDropped: UInt64,
                receiveFiltered: UInt64, transmittedPackets: UInt64, transmittedBytes: UInt64, transmitDropped: UInt64,
                malformedChains: UInt64, announcements: UInt64) {
        self.macAddress = macAddress
        self.linkUp = linkUp
        self.receivedPackets = receivedPackets
        self.receivedBytes = receivedBytes
        self.receiveDropped = receiveDropped
        self.receiveFiltered = receiveFiltered
        self.transmittedPackets = transmittedPackets
        self.transmittedBytes = transmittedBytes
        self.transmitDropped = transmitDropped
        self.malformedChains = malformedChains
        self.announcements = announcements
    }
}
