internal import CKVM
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A KVM virtual machine file descriptor: memory slots, irqchip, IRQ lines, dirty log, vCPUs.
final class KVMVirtualMachine: Sendable {
    let descriptor: OwnedFileDescriptor
    let system: KVMSystem

    init(descriptor: OwnedFileDescriptor, system: KVMSystem) {
        self.descriptor = descriptor
        self.system = system
    }

    /// `KVM_SET_TSS_ADDR`: three pages below 4 GiB that KVM uses for real-mode emulation.
    func setTSSAddress(_ address: UInt64) throws(HypervisorError) {
        try checkedIoctl("KVM_SET_TSS_ADDR 0x\(String(address, radix: 16))") {
            cvmfs_ioctl_ulong(descriptor.rawValue, CKVM_SET_TSS_ADDR, UInt(address))
        }
    }

    /// `KVM_SET_IDENTITY_MAP_ADDR`: one page below 4 GiB for the EPT identity map.
    func setIdentityMapAddress(_ address: UInt64) throws(HypervisorError) {
        var value = address
        try checkedIoctl("KVM_SET_IDENTITY_MAP_ADDR") { ioctl(descriptor.rawValue, CKVM_SET_IDENTITY_MAP_ADDR, &value) }
    }

    /// `KVM_CREATE_IRQCHIP` (PIC, IOAPIC, per-vCPU LAPIC) then `KVM_CREATE_PIT2` with a dummy speaker port.
    func createInterruptController() throws(HypervisorError) {
        try checkedIoctl("KVM_CREATE_IRQCHIP") { ioctl(descriptor.rawValue, CKVM_CREATE_IRQCHIP) }
        var pit = kvm_pit_config()
        pit.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        try checkedIoctl("KVM_CREATE_PIT2") { ioctl(descriptor.rawValue, CKVM_CREATE_PIT2, &pit) }
    }

    /// Registers (or, with size 0, deletes) a guest memory slot.
    func setMemoryRegion(slot: UInt32, guestPhysicalAddress: UInt64, size: UInt64,
                         hostAddress: UnsafeMutableRawPointer, logDirtyPages: Bool) throws(HypervisorError) {
        var region = kvm_userspace_memory_region(
            slot: slot, flags: logDirtyPages ? UInt32(KVM_MEM_LOG_DIRTY_PAGES) : 0,
            guest_phys_addr: guestPhysicalAddress, memory_size: size,
            userspace_addr: UInt64(UInt(bitPattern: hostAddress)))
        try checkedIoctl("KVM_SET_USER_MEMORY_REGION slot \(slot) at 0x\(String(guestPhysicalAddress, radix: 16))") {
            ioctl(descriptor.rawValue, CKVM_SET_USER_MEMORY_REGION, &region)
        }
    }

    /// `KVM_IRQ_LINE`: sets the level of an interrupt line (GSI).
    func setInterruptLine(_ gsi: UInt32, level: Bool) throws(HypervisorError) {
        var line = kvm_irq_level()
        line.irq = gsi
        line.level = level ? 1 : 0
        try checkedIoctl("KVM_IRQ_LINE \(gsi)") { ioctl(descriptor.rawValue, CKVM_IRQ_LINE, &line) }
    }

    /// `KVM_GET_DIRTY_LOG`: the bitmap (one bit per 4 KiB page) of pages written since the last
    /// call, for a slot registered with dirty logging. Reading clears the log.
    func dirtyLog(slot: UInt32, pageCount: Int) throws(HypervisorError) -> [UInt64] {
        var bitmap = [UInt64](repeating: 0, count: max(1, (pageCount + 63) / 64))
        let result = bitmap.withUnsafeMutableBytes { bytes -> Int32 in
            var log = kvm_dirty_log()
            log.slot = slot
            log.dirty_bitmap = bytes.baseAddress
            return ioctl(descriptor.rawValue, CKVM_GET_DIRTY_LOG, &log)
        }
        guard result >= 0 else { throw .systemCall("KVM_GET_DIRTY_LOG slot \(slot)") }
        return bitmap
    }

    /// `KVM_CREATE_VCPU` with the given index (which is also the APIC ID), and maps its `kvm_run`.
    func createVCPU(index: Int) throws(HypervisorError) -> KVMVCPU {
        let fd = try checkedIoctl("KVM_CREATE_VCPU \(index)") {
            ioctl(descriptor.rawValue, CKVM_CREATE_VCPU, Int32(index))
        }
        let owned = OwnedFileDescriptor(fd)
        let size = try system.vcpuMappingSize()
        guard let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapping != MAP_FAILED else {
            throw .systemCall("mmap kvm_run of vCPU \(index)")
        }
        return KVMVCPU(index: index, descriptor: owned, run: mapping, runSize: size)
    }
}
