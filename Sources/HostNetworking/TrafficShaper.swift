/// Shapes what a port sends with the kernel's token bucket filter: the TAP's ingress (frames the
/// guest sent) is redirected to an IFB device whose root qdisc is `tbf` with the port group's
/// average rate, burst and peak rate. Frames beyond the bucket are dropped in the kernel, so a
/// guest flooding its port costs the host nothing past the shaper and cannot crowd out others.
struct TrafficShaper {
    let commands: NetworkCommands

    /// The `tbf` parameters of `shaping` (a peak rate only when above the average; `mtu` is the
    /// peak bucket, which must hold a whole frame).
    static func tbfArguments(_ shaping: TrafficShaping) -> [String] {
        var arguments = ["tbf", "rate", "\(shaping.averageBitsPerSecond)bit", "burst", "\(shaping.burstBytes)", "latency", "100ms"]
        if shaping.peakBitsPerSecond > shaping.averageBitsPerSecond {
            arguments += ["peakrate", "\(shaping.peakBitsPerSecond)bit", "mtu", "2048"]
        }
        return arguments
    }

    /// Shapes port `port` (creating its IFB), or changes its shaping.
    func apply(_ shaping: TrafficShaping, port: String) throws(NetworkError) {
        let ifb = InterfaceNames.shaper(port: port)
        let purpose = "shaping port \(port)"
        if !HostInterfaces.exists(ifb) {
            try commands.run(.ip, ["link", "add", ifb, "type", "ifb"], purpose: purpose)
            try commands.run(.ip, ["link", "set", ifb, "up"], purpose: purpose)
            try commands.run(.tc, ["qdisc", "add", "dev", port, "handle", "ffff:", "ingress"], purpose: purpose)
            try commands.run(.tc, ["filter", "add", "dev", port, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
                                   "action", "mirred", "egress", "redirect", "dev", ifb], purpose: purpose)
        }
        try commands.run(.tc, ["qdisc", "replace", "dev", ifb, "root"] + Self.tbfArguments(shaping), purpose: purpose)
    }

    /// Stops shaping port `port` (its IFB goes; the port may be gone already).
    func remove(port: String) {
        let ifb = InterfaceNames.shaper(port: port)
        if HostInterfaces.exists(port) { _ = try? commands.run(.tc, ["qdisc", "del", "dev", port, "ingress"], purpose: "unshaping \(port)") }
        if HostInterfaces.exists(ifb) { _ = try? commands.run(.ip, ["link", "del", ifb], purpose: "unshaping \(port)") }
    }

    /// Frames the shaper dropped on port `port` (0 when it is not shaped).
    func drops(port: String) -> UInt64 {
        let ifb = InterfaceNames.shaper(port: port)
        guard HostInterfaces.exists(ifb),
              let output = try? commands.run(.tc, ["-s", "-j", "qdisc", "show", "dev", ifb], purpose: "reading shaper counters") else { return 0 }
        return JSONNumbers.first("drops", in: output) ?? 0
    }
}
