/// A loadable segment of an ELF executable.
public struct ELFSegment: Sendable, Equatable {
    /// Guest-physical load address (`p_paddr`).
    public var physicalAddress: UInt64
    /// Virtual address (`p_vaddr`).
    public var virtualAddress: UInt64
    /// Offset of the segment's bytes in the file.
    public var fileOffset: UInt64
    /// Bytes to copy from the file.
    public var fileSize: UInt64
    /// Bytes the segment occupies in memory (the rest is zero-filled).
    public var memorySize: UInt64
}

/// A parsed 64-bit little-endian x86-64 ELF executable (an uncompressed `vmlinux` or the test guest).
public struct ELFImage: Sendable, Equatable {
    /// The entry point (`e_entry`), a physical address for the images this VMM loads.
    public var entry: UInt64
    /// The `PT_LOAD` segments in file order.
    public var segments: [ELFSegment]

    static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]

    /// True when `bytes` start with the ELF magic.
    static func hasELFMagic(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && Array(bytes.prefix(4)) == magic
    }

    /// Parses and validates an ELF image.
    ///
    /// - Parameters:
    ///   - bytes: The whole file.
    ///   - name: The file name, used in error messages.
    /// - Throws: ``HypervisorError/Code/invalidImage`` naming the file and the field or offset that is wrong.
    public init(bytes: UnsafeRawBufferPointer, name: String) throws(HypervisorError) {
        let reader = ImageReader(bytes: bytes, name: name)
        try reader.require(0, 64, "ELF header")
        guard Self.hasELFMagic(bytes) else {
            throw HypervisorError(.invalidImage, "\(name): not an ELF file (bad magic at offset 0)")
        }
        guard bytes[4] == 2 else { throw HypervisorError(.invalidImage, "\(name): EI_CLASS at offset 4 is \(bytes[4]), expected 2 (64-bit)") }
        guard bytes[5] == 1 else { throw HypervisorError(.invalidImage, "\(name): EI_DATA at offset 5 is \(bytes[5]), expected 1 (little-endian)") }
        let type = try reader.load(UInt16.self, at: 16, field: "e_type")
        guard type == 2 else { throw HypervisorError(.invalidImage, "\(name): e_type at offset 16 is \(type), expected 2 (ET_EXEC)") }
        let machine = try reader.load(UInt16.self, at: 18, field: "e_machine")
        guard machine == 0x3E else {
            throw HypervisorError(.invalidImage, "\(name): e_machine at offset 18 is \(machine), expected 62 (x86-64)")
        }
        var entryPoint = try reader.load(UInt64.self, at: 24, field: "e_entry")
        let programHeaderOffset = try reader.load(UInt64.self, at: 32, field: "e_phoff")
        let programHeaderSize = Int(try reader.load(UInt16.self, at: 54, field: "e_phentsize"))
        let programHeaderCount = Int(try reader.load(UInt16.self, at: 56, field: "e_phnum"))
        guard programHeaderSize >= 56 else {
            throw HypervisorError(.invalidImage, "\(name): e_phentsize at offset 54 is \(programHeaderSize), expected 56")
        }
        guard programHeaderCount > 0 else { throw HypervisorError(.invalidImage, "\(name): e_phnum at offset 56 is 0: nothing to load") }
        guard programHeaderOffset < UInt64(bytes.count) else {
            throw HypervisorError(.invalidImage, "\(name): truncated: e_phoff 0x\(String(programHeaderOffset, radix: 16)) is past the end of the file (\(bytes.count) bytes)")
        }
        try reader.require(Int(programHeaderOffset), programHeaderSize * programHeaderCount, "program header table")

        var segments: [ELFSegment] = []
        for index in 0..<programHeaderCount {
            let base = Int(programHeaderOffset) + index * programHeaderSize
            guard try reader.load(UInt32.self, at: base, field: "p_type") == 1 else { continue }  // PT_LOAD
            let segment = ELFSegment(
                physicalAddress: try reader.load(UInt64.self, at: base + 24, field: "p_paddr"),
                virtualAddress: try reader.load(UInt64.self, at: base + 16, field: "p_vaddr"),
                fileOffset: try reader.load(UInt64.self, at: base + 8, field: "p_offset"),
                fileSize: try reader.load(UInt64.self, at: base + 32, field: "p_filesz"),
                memorySize: try reader.load(UInt64.self, at: base + 40, field: "p_memsz"))
            guard segment.fileSize <= segment.memorySize else {
                throw HypervisorError(.invalidImage, "\(name): program header \(index) at offset \(base): p_filesz \(segment.fileSize) exceeds p_memsz \(segment.memorySize)")
            }
            guard segment.fileOffset <= UInt64(bytes.count), segment.fileSize <= UInt64(bytes.count) - segment.fileOffset else {
                throw HypervisorError(.invalidImage, "\(name): truncated: segment \(index) needs file bytes 0x\(String(segment.fileOffset, radix: 16)) + \(segment.fileSize) but the file has \(bytes.count) bytes")
            }
            guard segment.physicalAddress <= UInt64.max - segment.memorySize else {
                throw HypervisorError(.invalidImage, "\(name): segment \(index) address 0x\(String(segment.physicalAddress, radix: 16)) + \(segment.memorySize) overflows")
            }
            segments.append(segment)
        }
        guard !segments.isEmpty else { throw HypervisorError(.invalidImage, "\(name): no PT_LOAD segment") }
        // The entry point must fall inside a segment, by physical or (translated) virtual address.
        if let segment = segments.first(where: { entryPoint >= $0.physicalAddress && entryPoint - $0.physicalAddress < $0.memorySize }) {
            _ = segment
        } else if let segment = segments.first(where: { entryPoint >= $0.virtualAddress && entryPoint - $0.virtualAddress < $0.memorySize }) {
            entryPoint = entryPoint - segment.virtualAddress + segment.physicalAddress
        } else {
            throw HypervisorError(.invalidImage, "\(name): e_entry 0x\(String(entryPoint, radix: 16)) at offset 24 is outside every PT_LOAD segment")
        }
        self.entry = entryPoint
        self.segments = segments
    }

    /// Lowest and one-past-highest guest-physical addresses the segments occupy.
    public var physicalRange: Range<UInt64> {
        let low = segments.map(\.physicalAddress).min() ?? 0
        let high = segments.map { $0.physicalAddress + $0.memorySize }.max() ?? 0
        return low..<high
    }

    /// Copies the segments into guest memory (zero-filling the BSS parts).
    func load(from bytes: UnsafeRawBufferPointer, into memory: GuestMemory, name: String) throws(HypervisorError) {
        for segment in segments {
            guard let destination = memory.hostPointer(at: segment.physicalAddress, count: segment.memorySize) else {
                throw HypervisorError(.invalidConfiguration, "\(name): segment at 0x\(String(segment.physicalAddress, radix: 16)) + \(segment.memorySize) bytes does not fit in guest memory (\(memory.size) bytes)")
            }
            let source = UnsafeRawBufferPointer(rebasing: bytes[Int(segment.fileOffset)..<Int(segment.fileOffset + segment.fileSize)])
            if let start = source.baseAddress { destination.copyMemory(from: start, byteCount: source.count) }
            (destination + Int(segment.fileSize)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(segment.memorySize - segment.fileSize))
        }
    }
}
