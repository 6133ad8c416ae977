/// The fields of a bzImage's setup header (`Documentation/arch/x86/boot.rst`) the loader uses.
public struct BzImageHeader: Sendable, Equatable {
    /// Offset of the setup header in the file and in `boot_params`.
    static let headerStart = 0x1F1
    /// Minimum boot protocol for the 64-bit entry (2.12).
    static let minimumVersion: UInt16 = 0x020C

    public var setupSectors: Int
    public var version: UInt16
    public var loadFlags: UInt8
    public var extendedLoadFlags: UInt16
    public var initrdAddressMax: UInt32
    public var kernelAlignment: UInt32
    public var commandLineSize: UInt32
    public var payloadOffset: UInt32
    public var payloadLength: UInt32
    public var preferredAddress: UInt64
    public var initSize: UInt32
    /// One past the last byte of the setup header (0x202 + the byte at 0x201).
    public var headerEnd: Int

    /// Bytes of real-mode setup code before the protected-mode kernel.
    public var setupSize: Int { (setupSectors + 1) * 512 }

    /// True when `bytes` look like a bzImage (boot flag and "HdrS" magic).
    static func hasBzImageMagic(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 0x206 else { return false }
        return bytes.loadUnaligned(fromByteOffset: 0x1FE, as: UInt16.self) == 0xAA55
            && bytes.loadUnaligned(fromByteOffset: 0x202, as: UInt32.self) == 0x5372_6448
    }

    /// Parses and validates the header of a 64-bit-capable bzImage.
    ///
    /// - Throws: ``HypervisorError/Code/invalidImage`` naming the file and the field.
    public init(bytes: UnsafeRawBufferPointer, name: String) throws(HypervisorError) {
        let reader = ImageReader(bytes: bytes, name: name)
        let bootFlag = try reader.load(UInt16.self, at: 0x1FE, field: "boot_flag")
        guard bootFlag == 0xAA55 else {
            throw HypervisorError(.invalidImage, "\(name): boot_flag at offset 0x1fe is 0x\(String(bootFlag, radix: 16)), expected 0xaa55")
        }
        let magic = try reader.load(UInt32.self, at: 0x202, field: "header magic")
        guard magic == 0x5372_6448 else {
            throw HypervisorError(.invalidImage, "\(name): setup header magic at offset 0x202 is 0x\(String(magic, radix: 16)), expected \"HdrS\"")
        }
        version = try reader.load(UInt16.self, at: 0x206, field: "version")
        guard version >= Self.minimumVersion else {
            throw HypervisorError(.invalidImage, "\(name): boot protocol version at offset 0x206 is \(version >> 8).\(version & 0xFF), need 2.12 or later")
        }
        let sectors = Int(try reader.load(UInt8.self, at: 0x1F1, field: "setup_sects"))
        setupSectors = sectors == 0 ? 4 : sectors
        loadFlags = try reader.load(UInt8.self, at: 0x211, field: "loadflags")
        guard loadFlags & 0x01 != 0 else {
            throw HypervisorError(.invalidImage, "\(name): loadflags at offset 0x211 lacks LOADED_HIGH: not a bzImage")
        }
        extendedLoadFlags = try reader.load(UInt16.self, at: 0x236, field: "xloadflags")
        guard extendedLoadFlags & 0x01 != 0 else {
            throw HypervisorError(.invalidImage, "\(name): xloadflags at offset 0x236 lacks XLF_KERNEL_64: no 64-bit entry point")
        }
        initrdAddressMax = try reader.load(UInt32.self, at: 0x22C, field: "initrd_addr_max")
        kernelAlignment = try reader.load(UInt32.self, at: 0x230, field: "kernel_alignment")
        commandLineSize = try reader.load(UInt32.self, at: 0x238, field: "cmdline_size")
        payloadOffset = try reader.load(UInt32.self, at: 0x248, field: "payload_offset")
        payloadLength = try reader.load(UInt32.self, at: 0x24C, field: "payload_length")
        preferredAddress = try reader.load(UInt64.self, at: 0x258, field: "pref_address")
        initSize = try reader.load(UInt32.self, at: 0x260, field: "init_size")
        headerEnd = 0x202 + Int(try reader.load(UInt8.self, at: 0x201, field: "jump offset"))
        try reader.require(0, headerEnd, "setup header")
        guard setupSize < bytes.count else {
            throw HypervisorError(.invalidImage, "\(name): truncated: setup_sects at offset 0x1f1 says the kernel starts at \(setupSize) but the file has \(bytes.count) bytes")
        }
        let payloadEnd = UInt64(setupSize) + UInt64(payloadOffset) + UInt64(payloadLength)
        guard payloadEnd <= UInt64(bytes.count) else {
            throw HypervisorError(.invalidImage, "\(name): truncated: payload_offset/payload_length at 0x248 end at \(payloadEnd) but the file has \(bytes.count) bytes")
        }
    }
}
