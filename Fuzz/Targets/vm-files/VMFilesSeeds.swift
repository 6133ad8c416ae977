@testable import Hypervisor
import VMManagement

/// Seeds: the .vmx of a Linux VM and of a test-guest VM with two NICs as vmctl writes them, a .vmdk
/// descriptor, a minimal bzImage setup header and a minimal one-segment ELF executable.
enum VMFilesSeeds {
    static func make() -> [(name: String, bytes: [UInt8])] {
        let linux = VirtualMachineDefinition(name: "web", vcpuCount: 2, memoryBytes: 512 << 20, disks: ["web.vmdk", "data.vmdk"],
                                             boot: .linux(kernel: "web.bzImage", initrd: "web.initrd", commandLine: "console=ttyS0"))
        // Two NICs: a generated and a static address (ethernetN.* keys).
        let nics = [
            NetworkInterfaceDefinition(portGroup: "VM Network", macAddress: MACAddress("00:50:56:01:02:03") ?? .broadcast),
            NetworkInterfaceDefinition(portGroup: "backup", macAddress: MACAddress("02:fc:00:00:00:2a") ?? .broadcast,
                                       addressType: .static, startConnected: false),
        ]
        let guest = VirtualMachineDefinition(name: "probe", vcpuCount: 1, memoryBytes: 64 << 20, disks: ["probe.vmdk"],
                                             boot: .testGuest(image: "probe.elf", workload: TestGuestWorkload.allCases[0], arguments: [1, 2]),
                                             networkInterfaces: nics)
        return [
            ("vmx-linux", [0] + Array(linux.vmx.text.utf8)),
            ("vmx-testguest", [0] + Array(guest.vmx.text.utf8)),
            ("vmdk", [1] + Array(VMDKDescriptor(byteCount: 8 << 30, extentFileName: "web-flat.vmdk").text.utf8)),
            ("bzimage", [2] + bzImage()),
            ("elf", [3] + elf()),
        ]
    }

    private static func put<T: FixedWidthInteger>(_ value: T, _ bytes: inout [UInt8], _ offset: Int) {
        for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    /// A setup header of boot protocol 2.15 with a 64-bit entry, and a small payload.
    private static func bzImage() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 0x1400)
        bytes[0x1F1] = 4                              // setup_sects
        put(UInt16(0xAA55), &bytes, 0x1FE)            // boot_flag
        bytes[0x201] = 0x6A                           // header end - 0x202
        put(UInt32(0x5372_6448), &bytes, 0x202)       // "HdrS"
        put(UInt16(0x020F), &bytes, 0x206)            // version 2.15
        bytes[0x211] = 1                              // loadflags: LOADED_HIGH
        put(UInt32(0x7FFF_FFFF), &bytes, 0x22C)       // initrd_addr_max
        put(UInt32(0x20_0000), &bytes, 0x230)         // kernel_alignment
        bytes[0x234] = 1                              // relocatable
        put(UInt16(0x3), &bytes, 0x236)               // xloadflags: 64-bit entry
        put(UInt32(2048), &bytes, 0x238)              // cmdline_size
        put(UInt32(0x100), &bytes, 0x248)             // payload_offset
        put(UInt32(0x200), &bytes, 0x24C)             // payload_length
        put(UInt64(0x100_0000), &bytes, 0x258)        // pref_address
        put(UInt32(0x10_0000), &bytes, 0x260)         // init_size
        return bytes
    }

    /// An ET_EXEC x86-64 image with one PT_LOAD segment at 1 MiB holding its entry point.
    private static func elf() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 0x200)
        bytes.replaceSubrange(0..<4, with: [0x7F, 0x45, 0x4C, 0x46])
        bytes[4] = 2; bytes[5] = 1; bytes[6] = 1
        put(UInt16(2), &bytes, 16)                    // ET_EXEC
        put(UInt16(0x3E), &bytes, 18)                 // x86-64
        put(UInt32(1), &bytes, 20)
        put(UInt64(0x10_0000), &bytes, 24)            // e_entry
        put(UInt64(64), &bytes, 32)                   // e_phoff
        put(UInt16(64), &bytes, 52)                   // e_ehsize
        put(UInt16(56), &bytes, 54)                   // e_phentsize
        put(UInt16(1), &bytes, 56)                    // e_phnum
        put(UInt32(1), &bytes, 64)                    // PT_LOAD
        put(UInt64(0x100), &bytes, 64 + 8)            // p_offset
        put(UInt64(0x10_0000), &bytes, 64 + 16)       // p_vaddr
        put(UInt64(0x10_0000), &bytes, 64 + 24)       // p_paddr
        put(UInt64(0x100), &bytes, 64 + 32)           // p_filesz
        put(UInt64(0x1000), &bytes, 64 + 40)          // p_memsz
        return bytes
    }
}
