internal import CVMFSLinux

/// A 128-bit identifier: a host's identity on the volume, or a volume's UUID.
public struct HostUUID: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The 16 bytes, in the order they are stored on disk.
    public let bytes: [UInt8]

    /// The all-zero identifier, meaning "nobody".
    public static let zero = HostUUID(bytes: [UInt8](repeating: 0, count: 16))

    /// Creates an identifier from 16 bytes (shorter input is zero-padded, longer is truncated).
    public init(bytes: [UInt8]) {
        var padded = Array(bytes.prefix(16))
        while padded.count < 16 { padded.append(0) }
        self.bytes = padded
    }

    /// Parses the canonical `8-4-4-4-12` form or 32 hex digits.
    public init?(_ text: String) {
        let hex = text.filter { $0 != "-" }
        guard hex.count == 32 else { return nil }
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        self.bytes = out
    }

    /// A random (version 4) identifier.
    public static func random() -> HostUUID {
        var bytes = [UInt8](repeating: 0, count: 16)
        let result = bytes.withUnsafeMutableBytes { cvmfs_random_bytes($0.baseAddress, 16) }
        if result != 0 {
            // getrandom cannot fail for 16 bytes on a running system; fall back to the clock.
            var seed = cvmfs_monotonic_ns() ^ UInt64(bitPattern: cvmfs_realtime_ns())
            for i in 0..<16 {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                bytes[i] = UInt8(truncatingIfNeeded: seed >> 33)
            }
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return HostUUID(bytes: bytes)
    }

    /// A stable identifier derived from a name, for `--host-id NAME` that is not a UUID.
    public static func derived(from name: String) -> HostUUID {
        // Two CRC32C passes with different seeds, stretched to 128 bits; stable across runs.
        let utf8 = Array(name.utf8)
        var words: [UInt32] = []
        var seed: UInt32 = 0x5F3759DF
        for _ in 0..<4 {
            seed = utf8.withUnsafeBytes { CRC32C.checksum($0, seed: seed) } ^ 0x9E3779B9
            words.append(seed)
        }
        var bytes: [UInt8] = []
        for word in words { for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt32(shift))) } }
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return HostUUID(bytes: bytes)
    }

    /// The identifier in `/etc/machine-id`, or `nil` if it cannot be read.
    public static func machineID(path: String = "/etc/machine-id") -> HostUUID? {
        var bytes = [UInt8](repeating: 0, count: 16)
        let result = bytes.withUnsafeMutableBufferPointer { cvmfs_read_machine_id(path, $0.baseAddress) }
        return result == 0 ? HostUUID(bytes: bytes) : nil
    }

    /// Parses `text` as a UUID, or derives a stable identifier from it.
    public static func parseOrDerive(_ text: String) -> HostUUID {
        HostUUID(text) ?? derived(from: text)
    }

    /// True for the all-zero identifier.
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// The first eight bytes as a little-endian integer: the volume ID stamped in every sector.
    var low64: UInt64 { ByteReader(bytes).u64(0) }

    public var description: String {
        let hex = bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.map(String.init).joined(separator: "-")
    }

    public static func < (lhs: HostUUID, rhs: HostUUID) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}
