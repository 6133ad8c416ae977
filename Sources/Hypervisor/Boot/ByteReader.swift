/// Bounds-checked little-endian reads from an image (a file mapping or a byte array), with errors
/// that name the image and the offending offset or field.
struct ImageReader {
    let bytes: UnsafeRawBufferPointer
    /// The file name used in error messages.
    let name: String

    var count: Int { bytes.count }

    func require(_ offset: Int, _ length: Int, _ field: String) throws(HypervisorError) {
        guard offset >= 0, length >= 0, offset <= bytes.count, length <= bytes.count - offset else {
            throw HypervisorError(
                .invalidImage,
                "\(name): truncated: \(field) needs bytes \(offset)..<\(offset + length) but the file has \(bytes.count) bytes")
        }
    }

    func load<T: FixedWidthInteger>(_ type: T.Type, at offset: Int, field: String) throws(HypervisorError) -> T {
        try require(offset, MemoryLayout<T>.size, field)
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    func slice(_ offset: Int, _ length: Int, field: String) throws(HypervisorError) -> UnsafeRawBufferPointer {
        try require(offset, length, field)
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
    }
}

/// Little-endian writes into a byte array at fixed offsets (boot structures are packed C structs).
struct ByteWriter {
    var bytes: [UInt8]

    init(count: Int) { bytes = [UInt8](repeating: 0, count: count) }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
        }
    }

    mutating func put(_ data: some Collection<UInt8>, at offset: Int) {
        for (i, byte) in data.enumerated() { bytes[offset + i] = byte }
    }

    func get<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        (0..<MemoryLayout<T>.size).reduce(T.zero) { $0 | T(bytes[offset + $1]) << (8 * $1) }
    }
}

/// The 8-bit sum that makes a table's bytes add up to zero (MP table and floating pointer).
func checksumByte(_ bytes: some Sequence<UInt8>) -> UInt8 {
    0 &- bytes.reduce(UInt8(0), &+)
}
