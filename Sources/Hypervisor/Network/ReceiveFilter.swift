/// Which frames a virtio-net driver asked to receive: its own address, the unicast and multicast
/// tables of VIRTIO_NET_CTRL_MAC_TABLE_SET, broadcast, and the promiscuous and all-multicast modes.
struct ReceiveFilter: Sendable, Equatable {
    var promiscuous = false
    /// All multicast frames (the default, until the driver sets a table and clears this).
    var allMulticast = true
    var unicast: Set<MACAddress> = []
    var multicast: Set<MACAddress> = []

    /// True when a frame to `destination` is for a NIC whose address is `own`.
    func accepts(destination: MACAddress, own: MACAddress) -> Bool {
        if promiscuous || destination == own || destination.isBroadcast { return true }
        if destination.isMulticast { return allMulticast || multicast.contains(destination) }
        return unicast.contains(destination)
    }
}
