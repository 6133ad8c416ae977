/// The virtual network of one host: its virtual switches and their port groups, as an
/// administrator defines them (in `hostd.toml`, through the agent's API, or in the file `vmctl run`
/// reads). The same port group names on every host are what lets a VM move between them.
public struct NetworkConfiguration: Sendable, Equatable, Codable {
    public var virtualSwitches: [VirtualSwitch]
    public var portGroups: [PortGroup]

    public init(virtualSwitches: [VirtualSwitch] = [], portGroups: [PortGroup] = []) {
        self.virtualSwitches = virtualSwitches
        self.portGroups = portGroups
    }

    public func virtualSwitch(named name: String) -> VirtualSwitch? { virtualSwitches.first { $0.name == name } }
    public func portGroup(named name: String) -> PortGroup? { portGroups.first { $0.name == name } }

    /// Checks every switch and port group and how they refer to each other.
    ///
    /// - Throws: ``NetworkError/Code/invalidArgument`` naming the entry and the field.
    public func validate() throws(NetworkError) {
        var switchNames: Set<String> = []
        var uplinkOwners: [String: String] = [:]
        for entry in virtualSwitches {
            try entry.validate()
            guard switchNames.insert(entry.name).inserted else {
                throw NetworkError(.invalidArgument, "virtual switch '\(entry.name)' is defined twice")
            }
            for uplink in entry.uplinks {
                if let other = uplinkOwners[uplink] {
                    throw NetworkError(.invalidArgument, "uplink '\(uplink)' is used by virtual switches '\(other)' and '\(entry.name)'; an interface belongs to one")
                }
                uplinkOwners[uplink] = entry.name
            }
        }
        var groupNames: Set<String> = []
        for group in portGroups {
            try group.validate()
            guard groupNames.insert(group.name).inserted else {
                throw NetworkError(.invalidArgument, "port group '\(group.name)' is defined twice")
            }
            guard switchNames.contains(group.virtualSwitch) else {
                throw NetworkError(.invalidArgument, "port group '\(group.name)' names virtual switch '\(group.virtualSwitch)', which does not exist")
            }
        }
    }

    /// Checks a name given to a virtual switch or port group: 1–64 printable ASCII characters
    /// without `/`, `"`, `\` or control characters (it appears in `.vmx` files, URLs and rules).
    static func checkName(_ name: String, _ what: String) throws(NetworkError) {
        guard !name.isEmpty, name.utf8.count <= 64,
              name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F && !"/\"\\".unicodeScalars.contains($0) }),
              name.first != " ", name.last != " " else {
            throw NetworkError(.invalidArgument, "\(what) name '\(name)' must be 1–64 printable ASCII characters without '/', '\"' or '\\' and not start or end with a space")
        }
    }
}

/// A virtual switch: a layer-2 switch on this host with zero or more uplinks (physical NICs, or
/// veths in tests) to the physical network. With several uplinks the first whose link is up
/// carries the traffic (active/standby).
public struct VirtualSwitch: Sendable, Equatable, Codable {
    public var name: String
    /// Host interfaces, in failover order. Empty: an internal-only switch.
    public var uplinks: [String]
    /// MTU of the switch's ports.
    public var mtu: Int

    public static let mtuRange = 68...9000

    public init(name: String, uplinks: [String] = [], mtu: Int = 1500) {
        self.name = name
        self.uplinks = uplinks
        self.mtu = mtu
    }

    func validate() throws(NetworkError) {
        try NetworkConfiguration.checkName(name, "virtual switch")
        guard Self.mtuRange.contains(mtu) else {
            throw NetworkError(.invalidArgument, "virtual switch '\(name)': mtu \(mtu) is outside \(Self.mtuRange.lowerBound)–\(Self.mtuRange.upperBound)")
        }
        var seen: Set<String> = []
        for uplink in uplinks {
            guard InterfaceNames.isValid(uplink) else {
                throw NetworkError(.invalidArgument, "virtual switch '\(name)': uplink '\(uplink)' is not an interface name (1–15 characters, no '/', ':' or whitespace)")
            }
            guard seen.insert(uplink).inserted else {
                throw NetworkError(.invalidArgument, "virtual switch '\(name)': uplink '\(uplink)' is listed twice")
            }
            guard !InterfaceNames.isOwn(uplink) else {
                throw NetworkError(.invalidArgument, "virtual switch '\(name)': uplink '\(uplink)' has the name of an interface the virtual switches create")
            }
        }
    }
}

/// A port group: a set of ports on one virtual switch with a VLAN and policies, named in each
/// VM NIC's `.vmx` entry (`ethernetN.networkName`).
public struct PortGroup: Sendable, Equatable, Codable {
    public var name: String
    public var virtualSwitch: String
    /// The 802.1Q VLAN ID its frames carry on the uplink; 0: untagged.
    public var vlan: Int
    public var security: SecurityPolicy
    /// Shaping of the traffic each port sends; nil: none.
    public var shaping: TrafficShaping?

    public static let vlanRange = 0...4094

    public init(name: String, virtualSwitch: String, vlan: Int = 0, security: SecurityPolicy = SecurityPolicy(),
                shaping: TrafficShaping? = nil) {
        self.name = name
        self.virtualSwitch = virtualSwitch
        self.vlan = vlan
        self.security = security
        self.shaping = shaping
    }

    func validate() throws(NetworkError) {
        try NetworkConfiguration.checkName(name, "port group")
        guard Self.vlanRange.contains(vlan) else {
            throw NetworkError(.invalidArgument, "port group '\(name)': vlan \(vlan) is outside 0–4094 (0 = untagged)")
        }
        try shaping?.validate(portGroup: name)
    }
}

/// The security policy of a port group, enforced on the host (the guest is never trusted with it).
/// Every switch defaults to reject.
public struct SecurityPolicy: Sendable, Equatable, Codable {
    /// Ports receive every frame of their VLAN, not only those addressed to them.
    public var allowPromiscuous: Bool
    /// A guest that changes its NIC's address keeps receiving (at the new address); rejected, the
    /// port receives nothing while the address differs from the one in the `.vmx`.
    public var allowMACChanges: Bool
    /// Frames may leave with a source address other than the NIC's.
    public var allowForgedTransmits: Bool

    public init(allowPromiscuous: Bool = false, allowMACChanges: Bool = false, allowForgedTransmits: Bool = false) {
        self.allowPromiscuous = allowPromiscuous
        self.allowMACChanges = allowMACChanges
        self.allowForgedTransmits = allowForgedTransmits
    }
}

/// Traffic shaping of what each port of a port group sends (ESX's outbound shaping): a token
/// bucket filling at the average rate, holding the burst, drained no faster than the peak rate.
public struct TrafficShaping: Sendable, Equatable, Codable {
    public var averageBitsPerSecond: UInt64
    public var peakBitsPerSecond: UInt64
    public var burstBytes: UInt64

    /// A burst must hold the largest frame.
    public static let minimumBurst: UInt64 = 2048
    public static let rateRange: ClosedRange<UInt64> = 8_000...100_000_000_000

    public init(averageBitsPerSecond: UInt64, peakBitsPerSecond: UInt64, burstBytes: UInt64) {
        self.averageBitsPerSecond = averageBitsPerSecond
        self.peakBitsPerSecond = peakBitsPerSecond
        self.burstBytes = burstBytes
    }

    func validate(portGroup: String) throws(NetworkError) {
        guard Self.rateRange.contains(averageBitsPerSecond) else {
            throw NetworkError(.invalidArgument, "port group '\(portGroup)': average rate \(averageBitsPerSecond) bit/s is outside 8 kbit/s – 100 Gbit/s")
        }
        guard peakBitsPerSecond >= averageBitsPerSecond, Self.rateRange.contains(peakBitsPerSecond) else {
            throw NetworkError(.invalidArgument, "port group '\(portGroup)': peak rate \(peakBitsPerSecond) bit/s must be at least the average (\(averageBitsPerSecond)) and at most 100 Gbit/s")
        }
        guard burstBytes >= Self.minimumBurst, burstBytes <= 1 << 30 else {
            throw NetworkError(.invalidArgument, "port group '\(portGroup)': burst \(burstBytes) bytes must be \(Self.minimumBurst) bytes – 1 GiB (it must hold a whole frame)")
        }
    }
}
