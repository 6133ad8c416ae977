public import TOMLKit

/// The `[[vswitch]]` and `[[portgroup]]` tables of `hostd.toml` (or of the file `vmctl run` reads
/// without an agent). Keys, all checked, unknown ones refused with their name:
///
/// ```toml
/// [[vswitch]]
/// name = "vSwitch0"
/// uplinks = ["eth1"]          # failover order; none: an internal switch
/// mtu = 1500
///
/// [[portgroup]]
/// name = "VM Network"
/// vswitch = "vSwitch0"
/// vlan = 0                    # 802.1Q VLAN ID on the uplink, 0 = untagged
/// allow_promiscuous = false
/// allow_mac_changes = false
/// allow_forged_transmits = false
/// average_bps = 10000000      # shaping: all three, or none
/// peak_bps = 20000000
/// burst_bytes = 65536
/// ```
extension NetworkConfiguration {
    static let switchKeys: Set<String> = ["name", "uplinks", "mtu"]
    static let portGroupKeys: Set<String> = ["name", "vswitch", "vlan", "allow_promiscuous", "allow_mac_changes", "allow_forged_transmits",
                                             "average_bps", "peak_bps", "burst_bytes"]

    /// Reads the network tables of `table` (other tables are left to the caller) and validates them.
    ///
    /// - Throws: ``NetworkError/Code/invalidArgument`` naming the file, the entry and the key.
    public init(toml table: TOMLTable, source: String) throws(NetworkError) {
        var switches: [VirtualSwitch] = []
        for (index, entry) in try Self.entries(table, "vswitch", source: source).enumerated() {
            let place = "\(source): vswitch[\(index)]"
            try Self.checkKeys(entry, Self.switchKeys, place: place)
            var uplinks: [String] = []
            if let value = entry["uplinks"] {
                guard let array = value.array else { throw NetworkError(.invalidArgument, "\(place).uplinks must be an array of interface names") }
                for item in array {
                    guard let name = item.string else { throw NetworkError(.invalidArgument, "\(place).uplinks must hold strings") }
                    uplinks.append(name)
                }
            }
            switches.append(VirtualSwitch(name: try Self.string(entry, "name", place: place), uplinks: uplinks,
                                          mtu: try Self.integer(entry, "mtu", place: place) ?? 1500))
        }
        var groups: [PortGroup] = []
        for (index, entry) in try Self.entries(table, "portgroup", source: source).enumerated() {
            let place = "\(source): portgroup[\(index)]"
            try Self.checkKeys(entry, Self.portGroupKeys, place: place)
            let security = SecurityPolicy(
                allowPromiscuous: try Self.bool(entry, "allow_promiscuous", place: place),
                allowMACChanges: try Self.bool(entry, "allow_mac_changes", place: place),
                allowForgedTransmits: try Self.bool(entry, "allow_forged_transmits", place: place))
            let rates = try ["average_bps", "peak_bps", "burst_bytes"].map { (key) throws(NetworkError) in try Self.integer(entry, key, place: place) }
            var shaping: TrafficShaping?
            switch (rates[0], rates[1], rates[2]) {
            case (nil, nil, nil): shaping = nil
            case (let average?, let peak, let burst?):
                guard average > 0, (peak ?? average) > 0, burst > 0 else {
                    throw NetworkError(.invalidArgument, "\(place): shaping rates and burst must be positive")
                }
                shaping = TrafficShaping(averageBitsPerSecond: UInt64(average), peakBitsPerSecond: UInt64(peak ?? average), burstBytes: UInt64(burst))
            default:
                throw NetworkError(.invalidArgument, "\(place): shaping needs average_bps and burst_bytes (peak_bps defaults to the average)")
            }
            groups.append(PortGroup(name: try Self.string(entry, "name", place: place), virtualSwitch: try Self.string(entry, "vswitch", place: place),
                                    vlan: try Self.integer(entry, "vlan", place: place) ?? 0, security: security, shaping: shaping))
        }
        self.init(virtualSwitches: switches, portGroups: groups)
        do { try validate() } catch { throw NetworkError(.invalidArgument, "\(source): \(error.message)") }
    }

    /// Parses a whole file of network tables (what `vmctl run --network-config` reads).
    public init(tomlText text: String, source: String) throws(NetworkError) {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch {
            throw NetworkError(.invalidArgument, "\(source): not valid TOML: \(error)")
        }
        for key in table.keys where key != "vswitch" && key != "portgroup" {
            throw NetworkError(.invalidArgument, "\(source): unknown table '\(key)' (known: vswitch, portgroup)")
        }
        try self.init(toml: table, source: source)
    }

    private static func entries(_ table: TOMLTable, _ key: String, source: String) throws(NetworkError) -> [TOMLTable] {
        guard let value = table[key] else { return [] }
        guard let array = value.array else { throw NetworkError(.invalidArgument, "\(source): '\(key)' must be an array of tables ([[\(key)]])") }
        var tables: [TOMLTable] = []
        for item in array {
            guard let entry = item.table else { throw NetworkError(.invalidArgument, "\(source): [[\(key)]] entries must be tables") }
            tables.append(entry)
        }
        return tables
    }

    private static func checkKeys(_ table: TOMLTable, _ known: Set<String>, place: String) throws(NetworkError) {
        for key in table.keys where !known.contains(key) {
            throw NetworkError(.invalidArgument, "\(place): unknown key '\(key)' (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    private static func string(_ table: TOMLTable, _ key: String, place: String) throws(NetworkError) -> String {
        guard let value = table[key] else { throw NetworkError(.invalidArgument, "\(place).\(key) is missing") }
        guard let text = value.string else { throw NetworkError(.invalidArgument, "\(place).\(key) must be a string") }
        return text
    }

    private static func integer(_ table: TOMLTable, _ key: String, place: String) throws(NetworkError) -> Int? {
        guard let value = table[key] else { return nil }
        guard let number = value.int else { throw NetworkError(.invalidArgument, "\(place).\(key) must be an integer") }
        return number
    }

    private static func bool(_ table: TOMLTable, _ key: String, place: String) throws(NetworkError) -> Bool {
        guard let value = table[key] else { return false }
        guard let flag = value.bool else { throw NetworkError(.invalidArgument, "\(place).\(key) must be true or false") }
        return flag
    }
}
