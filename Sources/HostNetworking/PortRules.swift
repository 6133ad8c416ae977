/// The nftables rules (bridge family, table `vmfs_vswitch`) that enforce a port group's security
/// policy on one VM port. Frames from a port are checked in `prerouting`, frames to it in
/// `forward`, each through a verdict map keyed by the port's interface name, so adding, changing
/// and removing a port is one small transaction that leaves the other ports' rules alone.
///
/// Counters (named per port) count what each rule dropped.
enum PortRules {
    static let table = "vmfs_vswitch"

    /// What the rules of one port are made from.
    struct Port: Equatable, Sendable {
        var name: String
        /// The address in the `.vmx`.
        var configuredMAC: String
        /// The address the guest's driver uses now (as its VMM reports it).
        var effectiveMAC: String
        var security: SecurityPolicy
    }

    /// The counters of one port and what they count.
    enum Counter: String, CaseIterable, Sendable {
        /// Frames from the port with a source address other than the NIC's (forged transmits rejected).
        case forged
        /// 802.1Q-tagged frames from the port (guests cannot choose their VLAN).
        case tagged
        /// Unicast frames to another address that would have reached the port (promiscuous rejected).
        case promiscuous
        /// Frames to a port whose guest changed its address (MAC changes rejected).
        case blocked
    }

    static func counterName(_ port: String, _ counter: Counter) -> String { "\(port)_\(counter.rawValue)" }

    /// The table, its maps and base chains (idempotent).
    static var tableScript: String {
        """
        add table bridge \(table)
        add map bridge \(table) from_port { type ifname : verdict; }
        add map bridge \(table) to_port { type ifname : verdict; }
        add chain bridge \(table) prerouting { type filter hook prerouting priority -200; policy accept; }
        add chain bridge \(table) forward { type filter hook forward priority 0; policy accept; }
        flush chain bridge \(table) prerouting
        flush chain bridge \(table) forward
        add rule bridge \(table) prerouting iifname vmap @from_port
        add rule bridge \(table) forward oifname vmap @to_port

        """
    }

    /// Creates or replaces the rules of `port` (its counters keep counting).
    static func install(_ port: Port) -> String {
        let name = port.name
        // Rejected MAC changes: the configured address counts, whatever the guest set.
        let own = port.security.allowMACChanges ? port.effectiveMAC : port.configuredMAC
        var lines: [String] = []
        for counter in Counter.allCases { lines.append("add counter bridge \(table) \(counterName(name, counter))") }
        lines += [
            "add chain bridge \(table) from_\(name)", "add chain bridge \(table) to_\(name)",
            "flush chain bridge \(table) from_\(name)", "flush chain bridge \(table) to_\(name)",
            "add rule bridge \(table) from_\(name) ether type { 8021q, 8021ad } counter name \(counterName(name, .tagged)) drop",
        ]
        if !port.security.allowForgedTransmits {
            lines.append("add rule bridge \(table) from_\(name) ether saddr != \(own) counter name \(counterName(name, .forged)) drop")
        }
        if !port.security.allowMACChanges && port.effectiveMAC != port.configuredMAC {
            lines.append("add rule bridge \(table) to_\(name) counter name \(counterName(name, .blocked)) drop")
        }
        if !port.security.allowPromiscuous {
            lines.append("add rule bridge \(table) to_\(name) ether daddr != \(own) ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00 "
                         + "counter name \(counterName(name, .promiscuous)) drop")
        }
        lines += [
            "add element bridge \(table) from_port { \"\(name)\" : jump from_\(name) }",
            "add element bridge \(table) to_port { \"\(name)\" : jump to_\(name) }",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Removes the rules and counters of port `name`.
    static func remove(_ name: String) -> String {
        var lines = [
            "delete element bridge \(table) from_port { \"\(name)\" }", "delete element bridge \(table) to_port { \"\(name)\" }",
            "delete chain bridge \(table) from_\(name)", "delete chain bridge \(table) to_\(name)",
        ]
        for counter in Counter.allCases { lines.append("delete counter bridge \(table) \(counterName(name, counter))") }
        return lines.joined(separator: "\n") + "\n"
    }
}
