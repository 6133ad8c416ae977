internal import CVMFSLinux
internal import FoundationEssentials

/// Facts about this network namespace's interfaces, read through the kernel's own interfaces
/// (`if_nametoindex`, `ip -j`), never `/sys/class/net`, which shows the namespace sysfs was
/// mounted in rather than the caller's.
enum HostInterfaces {
    static func exists(_ name: String) -> Bool { cvmfs_interface_index(name) != 0 }

    /// `ip -j -s link show` of one interface.
    struct Link: Decodable {
        struct Statistics: Decodable {
            struct Direction: Decodable {
                var bytes: UInt64?
                var packets: UInt64?
                var dropped: UInt64?
                var errors: UInt64?
            }
            var rx: Direction?
            var tx: Direction?
        }
        var ifname: String
        var operstate: String?
        var flags: [String]?
        var stats64: Statistics?
    }

    /// The interface's state and counters, nil when it does not exist.
    static func link(_ name: String, commands: NetworkCommands) -> Link? {
        guard exists(name), let output = try? commands.run(.ip, ["-j", "-s", "link", "show", "dev", name], purpose: "reading \(name)"),
              let links = try? JSONDecoder().decode([Link].self, from: Data(output.utf8)) else { return nil }
        return links.first
    }

    /// True when the interface exists and its link is up (carrier present).
    static func isUp(_ name: String, commands: NetworkCommands) -> Bool {
        guard let link = link(name, commands: commands) else { return false }
        return link.flags?.contains("LOWER_UP") ?? (link.operstate == "UP")
    }
}

/// Counters in the JSON of `tc -j` and `nft -j`.
enum JSONNumbers {
    private struct Qdisc: Decodable { var drops: UInt64? }

    /// The first qdisc's `key` counter of `tc -s -j qdisc show` output (only `drops` is read).
    static func first(_ key: String, in output: String) -> UInt64? {
        guard key == "drops", let qdiscs = try? JSONDecoder().decode([Qdisc].self, from: Data(output.utf8)) else { return nil }
        return qdiscs.first?.drops
    }

    private struct Ruleset: Decodable {
        struct Entry: Decodable { var counter: Counter? }
        struct Counter: Decodable {
            var name: String
            var packets: UInt64
        }
        var nftables: [Entry]
    }

    /// Packets counted by each named counter in `nft -j list counters` output.
    static func counters(in output: String) -> [String: UInt64] {
        guard let ruleset = try? JSONDecoder().decode(Ruleset.self, from: Data(output.utf8)) else { return [:] }
        var counters: [String: UInt64] = [:]
        for entry in ruleset.nftables {
            if let counter = entry.counter { counters[counter.name] = counter.packets }
        }
        return counters
    }
}

/// Names in `ip -j link show` output.
enum JSONDecoderShim {
    private struct Named: Decodable { var ifname: String }

    static func links(_ output: String) throws -> [String] {
        try JSONDecoder().decode([Named].self, from: Data(output.utf8)).map(\.ifname)
    }
}
