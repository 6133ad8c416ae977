/// What the host counted for one VM port: its policy drops, its shaper, and the TAP device.
public struct PortCounters: Sendable, Equatable, Codable {
    /// Frames from the guest dropped because their source address was not the NIC's.
    public var forgedDropped: UInt64 = 0
    /// 802.1Q-tagged frames from the guest (dropped: the port group chooses the VLAN).
    public var taggedDropped: UInt64 = 0
    /// Frames to other addresses kept from the port (promiscuous mode rejected).
    public var promiscuousDropped: UInt64 = 0
    /// Frames kept from a guest that changed its address (MAC changes rejected).
    public var macChangeDropped: UInt64 = 0
    /// Frames from the guest the shaper dropped.
    public var shapingDropped: UInt64 = 0
    /// Frames and bytes the guest sent into the switch (the TAP's receive side).
    public var fromGuestPackets: UInt64 = 0
    public var fromGuestBytes: UInt64 = 0
    /// Frames and bytes the switch delivered towards the guest (the TAP's transmit side), and
    /// those dropped because the VMM did not take them in time.
    public var toGuestPackets: UInt64 = 0
    public var toGuestBytes: UInt64 = 0
    public var toGuestDropped: UInt64 = 0

    public init() {}
}

/// A VM NIC's port as the host network knows it.
public struct PortStatus: Sendable, Equatable {
    /// The TAP interface.
    public var name: String
    public var vm: String
    public var nic: Int
    public var portGroup: String
    /// The address in the `.vmx`, and the one the guest uses now.
    public var configuredMAC: String
    public var effectiveMAC: String
    /// The bridge it is a port of.
    public var bridge: String
}

/// A port made for a VM NIC: the TAP's descriptor, for the VMM.
public struct ConnectedPort: Sendable {
    public var status: PortStatus
    /// The TAP descriptor (opened with a virtio-net header); the caller owns it and passes it on.
    public var descriptor: Int32

    public init(status: PortStatus, descriptor: Int32) {
        self.status = status
        self.descriptor = descriptor
    }
}
