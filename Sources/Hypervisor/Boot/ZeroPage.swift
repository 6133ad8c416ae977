/// Builds the Linux zero page (`struct boot_params`, `Documentation/arch/x86/zero-page.rst`).
struct ZeroPage {
    static let size = 4096
    static let e820CountOffset = 0x1E8
    static let e820TableOffset = 0x2D0
    static let e820MaximumEntries = 128

    private(set) var writer = ByteWriter(count: ZeroPage.size)

    /// Starts from the bzImage's own setup header (copied verbatim), as the boot protocol asks.
    init(setupHeader source: UnsafeRawBufferPointer, headerEnd: Int) {
        writer.put(UnsafeRawBufferPointer(rebasing: source[BzImageHeader.headerStart..<headerEnd]),
                   at: BzImageHeader.headerStart)
    }

    /// A synthetic setup header for kernels loaded from an ELF `vmlinux` (no setup code).
    init() {
        writer.put(UInt16(0xAA55), at: 0x1FE)         // boot_flag
        writer.put(UInt32(0x5372_6448), at: 0x202)    // "HdrS"
        writer.put(UInt16(0x020F), at: 0x206)         // version 2.15
        writer.put(UInt8(0x01), at: 0x211)            // loadflags: LOADED_HIGH
        writer.put(UInt32(0x0100_0000), at: 0x230)    // kernel_alignment
    }

    var bytes: [UInt8] { writer.bytes }

    /// Fills the loader fields: loader type, command line, initrd.
    mutating func setLoaderFields(commandLineAddress: UInt32, commandLineSize: UInt32,
                                  initrd: (address: UInt32, size: UInt32)?) {
        writer.put(UInt8(0xFF), at: 0x210)                       // type_of_loader: undefined
        writer.put(UInt16(0xFFFF), at: 0x1FA)                    // vid_mode: normal
        writer.put(commandLineAddress, at: 0x228)                // cmd_line_ptr
        writer.put(commandLineSize, at: 0x238)                   // cmdline_size
        writer.put(initrd?.address ?? 0, at: 0x218)              // ramdisk_image
        writer.put(initrd?.size ?? 0, at: 0x21C)                 // ramdisk_size
        // CAN_USE_HEAP with the conventional heap end.
        writer.put(writer.get(UInt8.self, at: 0x211) | 0x80, at: 0x211)
        writer.put(UInt16(0xFE00), at: 0x224)
    }

    /// Writes the e820 map; fails if it has more entries than the zero page holds.
    mutating func setMemoryMap(_ entries: [E820Entry]) throws(HypervisorError) {
        guard entries.count <= Self.e820MaximumEntries else {
            throw HypervisorError(.invalidConfiguration, "e820 map has \(entries.count) entries, at most 128 fit in the zero page")
        }
        writer.put(UInt8(entries.count), at: Self.e820CountOffset)
        for (index, entry) in entries.enumerated() {
            let base = Self.e820TableOffset + index * 20
            writer.put(entry.address, at: base)
            writer.put(entry.size, at: base + 8)
            writer.put(entry.kind.rawValue, at: base + 16)
        }
    }
}
