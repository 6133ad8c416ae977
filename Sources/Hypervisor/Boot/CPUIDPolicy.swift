/// The per-vCPU CPUID table derived from what KVM supports.
enum CPUIDPolicy {
    /// Patches KVM's supported CPUID for vCPU `index`: APIC IDs, the hypervisor bit, no energy-bias
    /// hint, no PMU unless it is version 2, and optionally no CMPXCHG16B (which the software
    /// hypervisor on the project's machines cannot emulate at CPL0).
    static func entries(from supported: [CPUIDEntry], vcpuIndex: Int, vcpuCount: Int,
                        hideCMPXCHG16B: Bool) -> [CPUIDEntry] {
        supported.map { original in
            var entry = original
            switch entry.function {
            case 0x1:
                entry.ebx = (entry.ebx & 0x00FF_FFFF) | UInt32(vcpuIndex) << 24
                // Logical processor count in EBX[23:16].
                entry.ebx = (entry.ebx & 0xFF00_FFFF) | UInt32(min(vcpuCount, 255)) << 16
                entry.ecx |= 1 << 31  // running under a hypervisor
                if hideCMPXCHG16B { entry.ecx &= ~(UInt32(1) << 13) }
                if vcpuCount > 1 { entry.edx |= 1 << 28 }  // HTT: EBX[23:16] is valid
            case 0x6:
                entry.ecx &= ~UInt32(1 << 3)
            case 0xA:
                if entry.eax & 0xFF != 2 { entry.eax = 0 }
            case 0xB, 0x1F:
                entry.edx = UInt32(vcpuIndex)
            default:
                break
            }
            return entry
        }
    }

    /// MSRs set on every vCPU before it first runs (SYSENTER/SYSCALL state cleared, fast strings,
    /// MTRRs enabled with write-back default).
    static let bootMSRs: [(index: UInt32, value: UInt64)] = [
        (0x174, 0), (0x175, 0), (0x176, 0),              // IA32_SYSENTER_CS/ESP/EIP
        (0xC000_0081, 0), (0xC000_0082, 0), (0xC000_0083, 0), (0xC000_0084, 0),  // STAR, LSTAR, CSTAR, SFMASK
        (0xC000_0102, 0),                                 // KERNEL_GS_BASE
        (0x10, 0),                                        // IA32_TSC
        (0x1A0, 1),                                       // IA32_MISC_ENABLE: fast strings
        (0x2FF, (1 << 11) | 6),                           // MTRRdefType: enabled, write-back
    ]
}
