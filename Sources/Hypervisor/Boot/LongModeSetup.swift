internal import CKVM

/// A segment descriptor as KVM takes it in `kvm_sregs` (mirrors a GDT entry).
struct SegmentDescriptor: Sendable, Equatable {
    var selector: UInt16
    var type: UInt8
    var privilegeLevel: UInt8
    /// S bit: code/data (true) or system (false).
    var isCodeOrData = true
    var is64BitCode = false
    var defaultOperationSize32 = false
    var base: UInt64 = 0
    var limit: UInt32 = 0xFFFF_FFFF
    var granularity4K = true

    /// The 8-byte GDT entry.
    var gdtEntry: UInt64 {
        let scaledLimit = granularity4K ? limit >> 12 : limit
        var value = UInt64(scaledLimit & 0xFFFF) | (UInt64(scaledLimit >> 16 & 0xF) << 48)
        value |= (base & 0xFF_FFFF) << 16 | (base >> 24 & 0xFF) << 56
        let access = UInt64(type) | (isCodeOrData ? 0x10 : 0) | UInt64(privilegeLevel) << 5 | 0x80
        value |= access << 40
        let flags = (is64BitCode ? 0x2 : 0) | (defaultOperationSize32 ? 0x4 : 0) | (granularity4K ? 0x8 : 0)
        value |= UInt64(flags) << 52
        return value
    }

    var kvmSegment: kvm_segment {
        var segment = kvm_segment()
        segment.base = base
        segment.limit = limit
        segment.selector = selector
        segment.type = type
        segment.present = 1
        segment.dpl = privilegeLevel
        segment.db = defaultOperationSize32 ? 1 : 0
        segment.s = isCodeOrData ? 1 : 0
        segment.l = is64BitCode ? 1 : 0
        segment.g = granularity4K ? 1 : 0
        return segment
    }
}

/// The guest state for entering 64-bit long mode directly: GDT, identity-mapped page tables with
/// 2 MiB pages, and the register values. Used for the Linux 64-bit boot protocol (CPL0) and for
/// the test guest (CPL3 with IOPL 3).
enum LongModeSetup {
    static let gdtAddress: UInt64 = 0x500
    static let idtAddress: UInt64 = 0x520
    static let pml4Address: UInt64 = 0x9000
    static let pdptAddress: UInt64 = 0xA000
    /// Page directories for the first 4 GiB (four pages, 0xB000–0xEFFF).
    static let lowDirectoriesAddress: UInt64 = 0xB000
    /// Page directories for RAM above 4 GiB (up to 60 more GiB).
    static let highDirectoriesAddress: UInt64 = 0x30000
    static let maximumMappedBytes: UInt64 = 64 << 30
    static let tssAddress: UInt64 = 0x1000

    // Linux's boot protocol wants __BOOT_CS = 0x10 and __BOOT_DS = 0x18.
    static let kernelCode = SegmentDescriptor(selector: 0x10, type: 0xB, privilegeLevel: 0, is64BitCode: true)
    static let kernelData = SegmentDescriptor(selector: 0x18, type: 0x3, privilegeLevel: 0, defaultOperationSize32: true)
    static let userData = SegmentDescriptor(selector: 0x23, type: 0x3, privilegeLevel: 3, defaultOperationSize32: true)
    static let userCode = SegmentDescriptor(selector: 0x2B, type: 0xB, privilegeLevel: 3, is64BitCode: true)
    /// The TSS carries a full, all-zero I/O permission bitmap (8 KiB after the 104-byte TSS), so
    /// CPL3 port I/O is permitted even where the hypervisor does not keep RFLAGS.IOPL (the
    /// software `kvm_pvm` hypervisor loses it on the first exit and then consults the bitmap).
    static let ioBitmapOffset = 0x68
    static let tssByteCount = ioBitmapOffset + 8192 + 1
    static let taskState = SegmentDescriptor(selector: 0x30, type: 0xB, privilegeLevel: 0, isCodeOrData: false,
                                             base: tssAddress, limit: UInt32(tssByteCount - 1), granularity4K: false)

    /// GDT: null, null, kernel code (0x10), kernel data (0x18), user data (0x20|3), user code
    /// (0x28|3), 64-bit TSS (0x30, two slots).
    static var gdtEntries: [UInt64] {
        [0, 0, kernelCode.gdtEntry, kernelData.gdtEntry, userData.gdtEntry, userCode.gdtEntry,
         taskState.gdtEntry, taskState.base >> 32]
    }

    /// Page-table entries for an identity map of `[0, mappedBytes)` with 2 MiB pages.
    ///
    /// - Returns: (guest address, bytes) pairs to write into guest memory.
    static func pageTables(mappedBytes: UInt64, userAccessible: Bool) -> [(UInt64, [UInt8])] {
        let flags: UInt64 = userAccessible ? 0x7 : 0x3       // present, writable (, user)
        let largePage: UInt64 = flags | 0x80                 // PS: 2 MiB page
        let gigabytes = Int(min(max(mappedBytes, 4 << 30), maximumMappedBytes) + (1 << 30) - 1) >> 30
        var pml4 = ByteWriter(count: 4096)
        pml4.put(pdptAddress | flags, at: 0)
        var pdpt = ByteWriter(count: 4096)
        var result: [(UInt64, [UInt8])] = []
        for gigabyte in 0..<gigabytes {
            let directory = gigabyte < 4 ? lowDirectoriesAddress + UInt64(gigabyte) * 4096
                : highDirectoriesAddress + UInt64(gigabyte - 4) * 4096
            pdpt.put(directory | flags, at: gigabyte * 8)
            var pd = ByteWriter(count: 4096)
            for entry in 0..<512 {
                let address = UInt64(gigabyte) << 30 | UInt64(entry) << 21
                pd.put(address | largePage, at: entry * 8)
            }
            result.append((directory, pd.bytes))
        }
        return [(pml4Address, pml4.bytes), (pdptAddress, pdpt.bytes)] + result
    }

    /// Writes the GDT, an empty IDT, a TSS and the page tables into guest memory.
    static func writeTables(into memory: GuestMemory, userAccessible: Bool) throws(HypervisorError) {
        var gdt = ByteWriter(count: gdtEntries.count * 8)
        for (index, entry) in gdtEntries.enumerated() { gdt.put(entry, at: index * 8) }
        try memory.write(gdt.bytes, at: gdtAddress)
        try memory.write([UInt8](repeating: 0, count: 8), at: idtAddress)
        var tss = ByteWriter(count: tssByteCount)
        tss.put(UInt16(ioBitmapOffset), at: 0x66)      // I/O map base
        tss.put(UInt8(0xFF), at: tssByteCount - 1)     // the bitmap's terminating byte
        try memory.write(tss.bytes, at: tssAddress)
        let mapped = memory.regions.map(\.guestEnd).max() ?? memory.size
        for (address, bytes) in pageTables(mappedBytes: mapped, userAccessible: userAccessible) {
            try memory.write(bytes, at: address)
        }
    }

    /// Special registers for 64-bit mode with paging at the given privilege level.
    static func specialRegisters(base: kvm_sregs, userMode: Bool) -> kvm_sregs {
        var sregs = base
        let code = userMode ? userCode : kernelCode
        let data = userMode ? userData : kernelData
        sregs.cs = code.kvmSegment
        sregs.ds = data.kvmSegment
        sregs.es = data.kvmSegment
        sregs.fs = data.kvmSegment
        sregs.gs = data.kvmSegment
        sregs.ss = data.kvmSegment
        sregs.tr = taskState.kvmSegment
        sregs.gdt.base = gdtAddress
        sregs.gdt.limit = UInt16(gdtEntries.count * 8 - 1)
        sregs.idt.base = idtAddress
        sregs.idt.limit = 7
        // PE | MP | ET | NE | WP | AM | PG
        sregs.cr0 = 0x8005_0033
        sregs.cr3 = pml4Address
        // PAE, OSFXSR, OSXMMEXCPT
        sregs.cr4 = 0x20 | 0x200 | 0x400
        // LME | LMA | SCE
        sregs.efer = 0x500 | 0x1
        return sregs
    }
}
