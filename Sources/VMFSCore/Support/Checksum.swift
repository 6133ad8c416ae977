internal import CVMFSLinux

/// CRC32C (Castagnoli), the checksum of every metadata sector.
enum CRC32C {
    /// The CRC32C of `bytes`, continuing from `seed` (0 for a fresh checksum).
    static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        cvmfs_crc32c(seed, bytes.baseAddress, bytes.count)
    }

    /// The CRC32C of `bytes`.
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// The CRC32C of `bytes` computed as if the four bytes at `fieldOffset` were zero.
    static func checksum(_ bytes: [UInt8], excludingFieldAt fieldOffset: Int) -> UInt32 {
        bytes.withUnsafeBytes { raw in
            var crc = checksum(UnsafeRawBufferPointer(rebasing: raw[0..<fieldOffset]))
            let zeros: [UInt8] = [0, 0, 0, 0]
            crc = zeros.withUnsafeBytes { checksum($0, seed: crc) }
            return checksum(UnsafeRawBufferPointer(rebasing: raw[(fieldOffset + 4)...]), seed: crc)
        }
    }
}
