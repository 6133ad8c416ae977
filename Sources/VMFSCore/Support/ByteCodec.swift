/// Little-endian encoding of fixed-offset fields into a byte array.
///
/// On-disk records are never laid out by Swift's struct layout: every field is written and read
/// at an explicit byte offset, so the format in `docs/FORMAT.md` is exactly what the code does.
struct ByteWriter {
    private(set) var bytes: [UInt8]

    init(count: Int) { bytes = [UInt8](repeating: 0, count: count) }
    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count, "field outside the record")
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    mutating func put(bytes source: some Collection<UInt8>, at offset: Int, maxCount: Int? = nil) {
        var i = offset
        for (n, byte) in source.enumerated() {
            if let maxCount, n >= maxCount { break }
            bytes[i] = byte
            i += 1
        }
    }

    /// Writes `text` as UTF-8 padded with NUL bytes to `width`.
    mutating func put(string text: String, at offset: Int, width: Int) {
        let utf8 = Array(text.utf8.prefix(width))
        for i in 0..<width { bytes[offset + i] = i < utf8.count ? utf8[i] : 0 }
    }

    mutating func put(uuid: HostUUID, at offset: Int) { put(bytes: uuid.bytes, at: offset) }
}

/// Little-endian decoding of fixed-offset fields from a byte buffer.
struct ByteReader {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func get<T: FixedWidthInteger>(_: T.Type = T.self, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count, "field outside the record")
        return T(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) })
    }

    /// `count` consecutive little-endian 32-bit values starting at `offset`.
    func u32Array(at offset: Int, count: Int) -> [UInt32] {
        precondition(offset >= 0 && offset + 4 * count <= bytes.count, "field outside the record")
        return bytes.withUnsafeBytes { raw in
            (0..<count).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4 * $0, as: UInt32.self)) }
        }
    }

    func u8(_ offset: Int) -> UInt8 { bytes[offset] }
    func u16(_ offset: Int) -> UInt16 { get(UInt16.self, at: offset) }
    func u32(_ offset: Int) -> UInt32 { get(UInt32.self, at: offset) }
    func u64(_ offset: Int) -> UInt64 { get(UInt64.self, at: offset) }
    func i64(_ offset: Int) -> Int64 { get(Int64.self, at: offset) }

    func slice(_ offset: Int, _ count: Int) -> [UInt8] { Array(bytes[offset..<(offset + count)]) }

    /// Reads a NUL-padded UTF-8 string of at most `width` bytes; `nil` if it is not valid UTF-8.
    func string(at offset: Int, width: Int) -> String? {
        var end = offset
        while end < offset + width && bytes[end] != 0 { end += 1 }
        return String(validating: bytes[offset..<end], as: UTF8.self)
    }

    func uuid(at offset: Int) -> HostUUID { HostUUID(bytes: slice(offset, 16)) }

    var isAllZero: Bool {
        bytes.withUnsafeBytes { raw in
            var index = 0
            while index + 8 <= raw.count {
                if raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) != 0 { return false }
                index += 8
            }
            while index < raw.count {
                if raw[index] != 0 { return false }
                index += 1
            }
            return true
        }
    }
}
