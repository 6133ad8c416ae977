/// The kernel interfaces a host's virtual switches are made of, named so that they can be found
/// again (after an agent restart) and never collide with the host's own (`IFNAMSIZ` = 16, so at
/// most 15 characters):
///
/// | name | what |
/// |---|---|
/// | `vb` + 6 hex (switch) + `v` + VLAN | the bridge of one VLAN of one virtual switch |
/// | `vt` + 6 hex (switch) + `v` + VLAN | that bridge's trunk port: the agent moves its frames to and from the uplink |
/// | `vn` + 10 hex (VM, NIC) | a VM NIC's port (TAP) |
/// | `vi` + 10 hex (VM, NIC) | the IFB a shaped port's traffic passes through |
public enum InterfaceNames {
    /// The bridge of `vlan` on virtual switch `switchName`.
    public static func bridge(switch switchName: String, vlan: Int) -> String { "vb\(hex(switchName, digits: 6))v\(vlan)" }
    /// The trunk port of that bridge.
    public static func trunk(switch switchName: String, vlan: Int) -> String { "vt\(hex(switchName, digits: 6))v\(vlan)" }
    /// The port (TAP) of NIC `index` of the VM identified by `vm` (its UUID).
    public static func port(vm: String, nic index: Int) -> String { "vn\(hex("\(vm)/\(index)", digits: 10))" }
    /// The IFB of that port (shaping).
    public static func shaper(port: String) -> String { "vi" + port.dropFirst(2) }

    /// A valid Linux interface name: 1–15 bytes, no `/`, `:` or whitespace.
    public static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 15 && name != "." && name != ".."
            && name.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && $0 != "/" && $0 != ":" }
    }

    /// True for names of the forms above (never to be used as an uplink).
    public static func isOwn(_ name: String) -> Bool {
        ["vb", "vt", "vn", "vi"].contains(String(name.prefix(2))) && name.dropFirst(2).first?.isHexDigit == true
            && name.utf8.count >= 10
    }

    /// The first `digits` hex digits of the FNV-1a hash of `text`.
    static func hex(_ text: String, digits: Int) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let full = String(hash, radix: 16)
        return String((String(repeating: "0", count: max(0, 16 - full.count)) + full).prefix(digits))
    }
}
