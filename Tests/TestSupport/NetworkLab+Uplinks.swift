import Foundation

extension NetworkLab {
    /// Gives machine `index` a second link into the lab's bridge, `name` inside its namespace, up
    /// and without an address: the uplink of a virtual switch (a host's physical NIC for VMs).
    public func addUplink(_ index: Int, name: String = "uplink0") throws {
        let outside = "u\(id)\(index)"
        try Self.ip(["link", "add", outside, "type", "veth", "peer", "name", name, "netns", namespace(index)])
        try Self.ip(["link", "set", outside, "master", bridge, "up"])
        try Self.ip(["-n", namespace(index), "link", "set", name, "up"])
    }

    /// The lab address `.host` (e.g. a guest's) as the test guest takes it: 0xAABBCCDD.
    public func guestAddress(_ host: Int) -> UInt64 {
        (prefix + ".\(host)").split(separator: ".").reduce(UInt64(0)) { $0 << 8 | (UInt64($1) ?? 0) }
    }
}
