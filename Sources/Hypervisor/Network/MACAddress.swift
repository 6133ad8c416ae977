/// An Ethernet (IEEE 802) MAC address.
///
/// Text form: six two-digit hex bytes separated by `:` (or `-`), e.g. `02:fc:1a:2b:3c:4d`.
public struct MACAddress: Hashable, Sendable, Comparable, LosslessStringConvertible {
    /// The six bytes, first on the wire first.
    public let bytes: [UInt8]

    /// The broadcast address ff:ff:ff:ff:ff:ff.
    public static let broadcast = MACAddress(unchecked: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])

    private init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// An address from six bytes; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 6 else { return nil }
        self.bytes = Array(bytes)
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); nil for anything else.
    public init?(_ description: String) {
        let parts = description.split(separator: description.contains("-") ? "-" : ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// A random locally administered unicast address (first byte `x2`, `x6`, `xA` or `xE`) with
    /// the given first byte's high nibble kept from `prefix` (default `02:fc`, this project's range).
    public static func random<G: RandomNumberGenerator>(prefix: [UInt8] = [0x02, 0xFC], using generator: inout G) -> MACAddress {
        var bytes = Array(prefix.prefix(6))
        while bytes.count < 6 { bytes.append(UInt8.random(in: 0...255, using: &generator)) }
        bytes[0] = (bytes[0] & 0xFC) | 0x02
        return MACAddress(unchecked: bytes)
    }

    /// A random locally administered unicast address in `02:fc:…`.
    public static func random() -> MACAddress {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// The group bit: multicast (and broadcast) addresses.
    public var isMulticast: Bool { bytes[0] & 0x01 != 0 }
    public var isBroadcast: Bool { self == Self.broadcast }
    /// The locally administered bit (not assigned by a vendor).
    public var isLocallyAdministered: Bool { bytes[0] & 0x02 != 0 }
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }
    /// A valid address for a NIC: unicast and not all zeros.
    public var isUsableUnicast: Bool { !isMulticast && !isZero }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }

    public static func < (lhs: MACAddress, rhs: MACAddress) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}
