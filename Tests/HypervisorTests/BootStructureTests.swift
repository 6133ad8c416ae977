import Testing
@testable import Hypervisor

@Suite("Boot structures (no KVM needed)")
struct BootStructureTests {
    @Test func e820MapCoversLowMemoryAndSkipsTheHole() {
        let regions = GuestMemory.layout(forSize: 4 << 30)
        #expect(regions.count == 2)
        #expect(regions[0] == GuestMemoryRegion(guestAddress: 0, size: 0xC000_0000, hostOffset: 0))
        #expect(regions[1] == GuestMemoryRegion(guestAddress: 1 << 32, size: 1 << 30, hostOffset: 0xC000_0000))
        let map = E820Map.entries(for: regions)
        #expect(map == [
            E820Entry(address: 0, size: 0x9_FC00, kind: .ram),
            E820Entry(address: 0x9_FC00, size: 0x10_0000 - 0x9_FC00, kind: .reserved),
            E820Entry(address: 0x10_0000, size: 0xC000_0000 - 0x10_0000, kind: .ram),
            E820Entry(address: 1 << 32, size: 1 << 30, kind: .ram),
        ])
    }

    @Test func zeroPageHoldsLoaderFieldsAndE820Table() throws {
        var page = ZeroPage()
        page.setLoaderFields(commandLineAddress: 0x20000, commandLineSize: 12, initrd: (0x0FEE_6000, 0x11A000))
        try page.setMemoryMap(E820Map.entries(for: GuestMemory.layout(forSize: 256 << 20)))
        let bytes = page.bytes
        func u32(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) } }
        func u64(_ offset: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) } }
        #expect(bytes.count == 4096)
        #expect(bytes[0x1FE] == 0x55 && bytes[0x1FF] == 0xAA)
        #expect(u32(0x202) == 0x5372_6448)
        #expect(bytes[0x210] == 0xFF)                 // type_of_loader
        #expect(u32(0x228) == 0x20000)                // cmd_line_ptr
        #expect(u32(0x218) == 0x0FEE_6000)            // ramdisk_image
        #expect(u32(0x21C) == 0x11A000)               // ramdisk_size
        #expect(bytes[0x1E8] == 3)                    // e820_entries
        #expect(u64(0x2D0 + 40) == 0x10_0000)         // third entry: RAM from 1 MiB
        #expect(u64(0x2D0 + 48) == (256 << 20) - 0x10_0000)
        #expect(u32(0x2D0 + 56) == 1)
    }

    @Test func zeroPageRejectsTooManyE820Entries() {
        var page = ZeroPage()
        let entries = [E820Entry](repeating: E820Entry(address: 0, size: 4096, kind: .ram), count: 129)
        #expect(throws: HypervisorError.self) { try page.setMemoryMap(entries) }
    }

    @Test(arguments: [1, 4, 254])
    func mpTableChecksumsAndEntries(cpus: Int) throws {
        let routes = [PCIInterruptRoute(slot: 1, pin: 1, ioapicPin: 16), PCIInterruptRoute(slot: 2, pin: 1, ioapicPin: 17)]
        let bytes = try MPTable.build(cpuCount: cpus, pciRoutes: routes, at: 0x9FC00)
        // Floating pointer: "_MP_", physptr right after it, 16 bytes summing to zero.
        #expect(Array(bytes[0..<4]) == Array("_MP_".utf8))
        #expect(bytes[0..<16].reduce(UInt8(0), &+) == 0)
        let physptr = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[4 + $1]) << (8 * $1) }
        #expect(physptr == 0x9FC00 + 16)
        // Table: "PCMP", its length, checksum over the whole table.
        let table = Array(bytes[16...])
        #expect(Array(table[0..<4]) == Array("PCMP".utf8))
        let length = Int(table[4]) | Int(table[5]) << 8
        #expect(length == table.count)
        #expect(table.reduce(UInt8(0), &+) == 0)
        #expect(String(decoding: table[8..<16], as: UTF8.self) == "SWIFTVMM")
        // Entry count: cpus + 2 buses + IOAPIC + 16 ISA + 2 PCI + 2 local interrupts.
        let count = Int(table[34]) | Int(table[35]) << 8
        #expect(count == cpus + 2 + 1 + 16 + routes.count + 2)
        // Processor entries: APIC IDs 0..<cpus, only the first is the BSP.
        for cpu in 0..<cpus {
            let entry = table[44 + cpu * 20..<44 + cpu * 20 + 20].map { $0 }
            #expect(entry[0] == 0 && Int(entry[1]) == cpu)
            #expect(entry[3] == (cpu == 0 ? 3 : 1))
        }
        // PCI interrupt source for slot 2 INTA → IOAPIC pin 17, level-triggered, srcbusirq = 2 << 2.
        let sourcesStart = 44 + cpus * 20 + 16 + 8 + 16 * 8
        let pci = Array(table[sourcesStart + 8..<sourcesStart + 16])
        #expect(pci == [3, 0, 0x0F, 0x00, MPTable.pciBusID, 2 << 2, MPTable.ioapicID(cpuCount: cpus), 17])
    }

    @Test func mpTableRejectsTooManyCPUs() {
        #expect(throws: HypervisorError.self) { try MPTable.build(cpuCount: 255, pciRoutes: [], at: 0x9FC00) }
        #expect(throws: HypervisorError.self) { try MPTable.build(cpuCount: 0, pciRoutes: [], at: 0x9FC00) }
    }

    @Test func gdtDescriptorsMatchTheBootProtocol() {
        // The classic flat 64-bit code and data descriptors (also used by Firecracker).
        #expect(LongModeSetup.kernelCode.gdtEntry == 0x00AF_9B00_0000_FFFF)
        #expect(LongModeSetup.kernelData.gdtEntry == 0x00CF_9300_0000_FFFF)
        #expect(LongModeSetup.userCode.gdtEntry == 0x00AF_FB00_0000_FFFF)
        #expect(LongModeSetup.userData.gdtEntry == 0x00CF_F300_0000_FFFF)
        // __BOOT_CS = 0x10 and __BOOT_DS = 0x18 index the kernel descriptors.
        let gdt = LongModeSetup.gdtEntries
        #expect(gdt[Int(LongModeSetup.kernelCode.selector >> 3)] == LongModeSetup.kernelCode.gdtEntry)
        #expect(gdt[Int(LongModeSetup.kernelData.selector >> 3)] == LongModeSetup.kernelData.gdtEntry)
        #expect(gdt[Int(LongModeSetup.userCode.selector >> 3)] == LongModeSetup.userCode.gdtEntry)
        #expect(LongModeSetup.userCode.selector & 3 == 3)
        let tss = LongModeSetup.taskState.gdtEntry
        #expect((tss >> 40) & 0xF == 0xB)                           // busy 64-bit TSS
        #expect((tss >> 16) & 0xFF_FFFF == LongModeSetup.tssAddress) // base
    }

    @Test(arguments: [false, true])
    func pageTablesIdentityMapWithTwoMegabytePages(userAccessible: Bool) {
        let tables = LongModeSetup.pageTables(mappedBytes: 6 << 30, userAccessible: userAccessible)
        var byAddress: [UInt64: [UInt8]] = [:]
        for (address, bytes) in tables { byAddress[address] = bytes }
        func entry(_ table: UInt64, _ index: Int) -> UInt64 {
            let bytes = byAddress[table]!
            return (0..<8).reduce(0) { $0 | UInt64(bytes[index * 8 + $1]) << (8 * UInt64($1)) }
        }
        let flags: UInt64 = userAccessible ? 0x7 : 0x3
        #expect(entry(LongModeSetup.pml4Address, 0) == LongModeSetup.pdptAddress | flags)
        // Walk a few addresses, including one above 4 GiB, and check they map to themselves.
        for address: UInt64 in [0, 0x20_0000, 0x1234_5678, 0xFEE0_0000, 0x1_4000_0000 + 0x60_0000] {
            let pdpte = entry(LongModeSetup.pdptAddress, Int(address >> 30))
            #expect(pdpte & 0xFFF == flags)
            let pde = entry(pdpte & ~0xFFF, Int((address >> 21) & 0x1FF))
            #expect(pde & 0xFFF == flags | 0x80)
            #expect((pde & ~0xFFF) | (address & 0x1F_FFFF) == address)
        }
        #expect(byAddress.count == 2 + 6)
    }

    @Test func cpuidPolicyPatchesPerVCPUFields() {
        let supported = [CPUIDEntry(function: 1, ebx: 0xFF00_0800, ecx: 1 << 13, edx: 0),
                         CPUIDEntry(function: 6, ecx: 0x9), CPUIDEntry(function: 0xB, edx: 77),
                         CPUIDEntry(function: 0xA, eax: 0x0803)]
        let patched = CPUIDPolicy.entries(from: supported, vcpuIndex: 3, vcpuCount: 4, hideCMPXCHG16B: true)
        #expect(patched[0].ebx >> 24 == 3)
        #expect((patched[0].ebx >> 16) & 0xFF == 4)
        #expect(patched[0].ecx & (1 << 31) != 0)
        #expect(patched[0].ecx & (1 << 13) == 0)
        #expect(patched[1].ecx == 0x1)
        #expect(patched[2].edx == 3)
        #expect(patched[3].eax == 0)
        let kept = CPUIDPolicy.entries(from: supported, vcpuIndex: 0, vcpuCount: 1, hideCMPXCHG16B: false)
        #expect(kept[0].ecx & (1 << 13) != 0)
    }
}
