/// Constants of the agent ↔ VMM protocol (`docs/VMX-PROTOCOL.md`).
public enum VMXProtocol {
    /// The protocol version this build speaks; frames of other versions are refused.
    public static let version: UInt16 = 2
    /// "VMXC" as little-endian bytes `56 4D 58 43`.
    public static let controlMagic: UInt32 = 0x4358_4D56
    /// Bytes of the fixed frame header.
    public static let headerSize = 16
    /// Largest payload of one control frame.
    public static let maximumPayload = 60 * 1024
    /// Most descriptors one control frame may carry.
    public static let maximumDescriptors = 64
}

/// The 16-byte header of every control frame (little-endian):
/// `u32 magic @0, u16 version @4, u16 type @6, u32 payload length @8, u32 descriptor count @12`.
public struct ControlFrameHeader: Sendable, Equatable {
    public var type: UInt16
    public var payloadLength: UInt32
    public var descriptorCount: UInt32

    public init(type: UInt16, payloadLength: UInt32, descriptorCount: UInt32) {
        self.type = type
        self.payloadLength = payloadLength
        self.descriptorCount = descriptorCount
    }

    /// The header's bytes.
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VMXProtocol.headerSize)
        LittleEndianBytes.put(VMXProtocol.controlMagic, into: &bytes, at: 0)
        LittleEndianBytes.put(VMXProtocol.version, into: &bytes, at: 4)
        LittleEndianBytes.put(type, into: &bytes, at: 6)
        LittleEndianBytes.put(payloadLength, into: &bytes, at: 8)
        LittleEndianBytes.put(descriptorCount, into: &bytes, at: 12)
        return bytes
    }

    /// Decodes and checks a header at the start of `frame` (the whole received frame).
    ///
    /// - Throws: ``VMXProtocolError`` naming the field that is wrong: magic, version, a payload
    ///   length that is not the frame's, or too many descriptors.
    public static func decode(_ frame: ArraySlice<UInt8>) throws(VMXProtocolError) -> ControlFrameHeader {
        guard frame.count >= VMXProtocol.headerSize else {
            throw VMXProtocolError(.malformed, "control frame of \(frame.count) bytes is shorter than its 16-byte header")
        }
        let magic: UInt32 = LittleEndianBytes.get(frame, at: 0)
        guard magic == VMXProtocol.controlMagic else {
            throw VMXProtocolError(.malformed, "control frame magic is 0x\(String(magic, radix: 16)), expected 0x\(String(VMXProtocol.controlMagic, radix: 16))")
        }
        let version: UInt16 = LittleEndianBytes.get(frame, at: 4)
        guard version == VMXProtocol.version else {
            throw VMXProtocolError(.unsupportedVersion, "control frame version \(version); this build speaks version \(VMXProtocol.version)")
        }
        let header = ControlFrameHeader(type: LittleEndianBytes.get(frame, at: 6), payloadLength: LittleEndianBytes.get(frame, at: 8),
                                        descriptorCount: LittleEndianBytes.get(frame, at: 12))
        guard Int(header.payloadLength) == frame.count - VMXProtocol.headerSize else {
            throw VMXProtocolError(.malformed, "control frame says \(header.payloadLength) payload bytes but carries \(frame.count - VMXProtocol.headerSize)")
        }
        guard header.descriptorCount <= UInt32(VMXProtocol.maximumDescriptors) else {
            throw VMXProtocolError(.malformed, "control frame announces \(header.descriptorCount) descriptors; at most \(VMXProtocol.maximumDescriptors)")
        }
        return header
    }
}

/// Little-endian integer access to byte arrays at explicit offsets (callers check bounds first).
enum LittleEndianBytes {
    static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (index, byte) in raw.enumerated() { bytes[offset + index] = byte }
        }
    }

    static func get<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>, at offset: Int) -> T {
        var value: T = 0
        let start = bytes.startIndex + offset
        for index in 0..<MemoryLayout<T>.size {
            value |= T(truncatingIfNeeded: bytes[start + index]) << (8 * index)
        }
        return value
    }
}
