/// Little-endian encoding of fixed-offset fields into a byte array.
///
/// On-disk records are never laid out by Swift's struct layout: every field is written and read
/// at an explicit byte offset, so the format in `docs/FORMAT.md` is exactly what the code does.
struct ByteWriter {
    private(set) var bytes: [UInt8]

    init(count: Int) { bytes = [UInt8](repeating: 0, count: count) }
    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { raw in
            for i in 0..<raw.count { bytes[offset + i] = raw[i] }
        }
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
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<raw.count { raw[i] = bytes[offset + i] }
        }
        return T(littleEndian: value)
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

    var isAllZero: Bool { !bytes.contains { $0 != 0 } }
}
