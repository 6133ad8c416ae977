internal import CKVM
#if canImport(Glibc)
internal import Glibc
#endif

/// Why `KVM_RUN` returned, decoded from `kvm_run`.
enum VCPUExit {
    /// Port I/O: `count` repetitions of `size` bytes at `data` inside the `kvm_run` mapping.
    case portIO(port: UInt16, size: Int, count: Int, isWrite: Bool, data: UnsafeMutableRawPointer)
    /// A guest access to guest-physical memory no slot backs.
    case mmio(address: UInt64, length: Int, isWrite: Bool, data: UnsafeMutableRawPointer)
    /// `KVM_RUN` was interrupted by a signal (a kick) or `immediate_exit`.
    case interrupted
    case halt
    /// Triple fault or reset.
    case shutdown
    /// `KVM_EXIT_SYSTEM_EVENT` with its type (1 shutdown, 2 reset, 3 crash).
    case systemEvent(type: UInt32)
    /// `KVM_EXIT_FAIL_ENTRY` / `KVM_EXIT_INTERNAL_ERROR` and any other reason; a textual description.
    case failure(String)
}

/// A vCPU file descriptor and its `kvm_run` mapping.
///
/// The vCPU's own thread is the only one that runs it and reads or writes its registers; other
/// threads only set `immediate_exit` (a single byte KVM reads on entry) before kicking the thread,
/// which is why this type is `@unchecked Sendable`.
final class KVMVCPU: @unchecked Sendable {
    let index: Int
    let descriptor: OwnedFileDescriptor
    private let run: UnsafeMutableRawPointer
    private let runSize: Int

    init(index: Int, descriptor: OwnedFileDescriptor, run: UnsafeMutableRawPointer, runSize: Int) {
        self.index = index
        self.descriptor = descriptor
        self.run = run
        self.runSize = runSize
    }

    deinit {
        munmap(run, runSize)
        descriptor.close()
    }

    private var runState: UnsafeMutablePointer<kvm_run> { run.assumingMemoryBound(to: kvm_run.self) }

    /// Sets or clears `kvm_run.immediate_exit` so the next (or current, once kicked) `KVM_RUN`
    /// returns `EINTR` at once.
    func setImmediateExit(_ value: Bool) {
        // A volatile-enough byte store: KVM reads it on every entry.
        run.storeBytes(of: value ? 1 : 0, toByteOffset: 1, as: UInt8.self)
    }

    /// Enters the guest until the next exit (`KVM_RUN`).
    func runOnce() throws(HypervisorError) -> VCPUExit {
        let result = ioctl(descriptor.rawValue, CKVM_RUN)
        if result < 0 {
            let error = errno
            if error == EINTR || error == EAGAIN { return .interrupted }
            throw .systemCall("KVM_RUN on vCPU \(index)", errno: error)
        }
        let state = runState
        switch Int32(state.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let io = state.pointee.io
            return .portIO(port: io.port, size: Int(io.size), count: Int(io.count),
                           isWrite: io.direction == UInt8(KVM_EXIT_IO_OUT), data: run + Int(io.data_offset))
        case KVM_EXIT_MMIO:
            let data = run + MemoryLayout<kvm_run>.offset(of: \kvm_run.mmio.data)!
            return .mmio(address: state.pointee.mmio.phys_addr, length: Int(state.pointee.mmio.len),
                         isWrite: state.pointee.mmio.is_write != 0, data: data)
        case KVM_EXIT_INTR:
            return .interrupted
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_SYSTEM_EVENT:
            return .systemEvent(type: state.pointee.system_event.type)
        case KVM_EXIT_FAIL_ENTRY:
            let reason = state.pointee.fail_entry.hardware_entry_failure_reason
            return .failure("KVM_EXIT_FAIL_ENTRY (hardware reason 0x\(String(reason, radix: 16)))")
        case KVM_EXIT_INTERNAL_ERROR:
            return .failure("KVM_EXIT_INTERNAL_ERROR (suberror \(state.pointee.internal.suberror))")
        default:
            return .failure("unhandled exit reason \(state.pointee.exit_reason)")
        }
    }

    // MARK: Register state

    func registers() throws(HypervisorError) -> kvm_regs {
        var regs = kvm_regs()
        try checkedIoctl("KVM_GET_REGS vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_GET_REGS, &regs) }
        return regs
    }

    func setRegisters(_ value: kvm_regs) throws(HypervisorError) {
        var regs = value
        try checkedIoctl("KVM_SET_REGS vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_SET_REGS, &regs) }
    }

    func specialRegisters() throws(HypervisorError) -> kvm_sregs {
        var sregs = kvm_sregs()
        try checkedIoctl("KVM_GET_SREGS vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_GET_SREGS, &sregs) }
        return sregs
    }

    func setSpecialRegisters(_ value: kvm_sregs) throws(HypervisorError) {
        var sregs = value
        try checkedIoctl("KVM_SET_SREGS vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_SET_SREGS, &sregs) }
    }

    /// Sets the x87/SSE state to its reset values (FCW 0x37f, MXCSR 0x1f80).
    func resetFPU() throws(HypervisorError) {
        var fpu = kvm_fpu()
        fpu.fcw = 0x37f
        fpu.mxcsr = 0x1f80
        try checkedIoctl("KVM_SET_FPU vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_SET_FPU, &fpu) }
    }

    /// `KVM_SET_MSRS`; fails unless every MSR was accepted.
    func setModelSpecificRegisters(_ values: [(index: UInt32, value: UInt64)]) throws(HypervisorError) {
        guard !values.isEmpty else { return }
        guard let block = ckvm_msrs_allocate(UInt32(values.count)) else {
            throw HypervisorError(.systemCall, "cannot allocate an MSR list", errno: ENOMEM)
        }
        defer { ckvm_free(block) }
        for (i, entry) in values.enumerated() {
            let slot = ckvm_msrs_entry(block, UInt32(i))!
            slot.pointee.index = entry.index
            slot.pointee.data = entry.value
        }
        let written = try checkedIoctl("KVM_SET_MSRS vCPU \(index)") {
            ioctl(descriptor.rawValue, CKVM_SET_MSRS, UnsafeMutableRawPointer(block))
        }
        guard written == values.count else {
            let rejected = values[Int(written)].index
            throw HypervisorError(.systemCall, "KVM_SET_MSRS vCPU \(index) rejected MSR 0x\(String(rejected, radix: 16))")
        }
    }

    /// `KVM_GET_MSRS` for a single MSR.
    func modelSpecificRegister(_ msr: UInt32) throws(HypervisorError) -> UInt64 {
        guard let block = ckvm_msrs_allocate(1) else {
            throw HypervisorError(.systemCall, "cannot allocate an MSR list", errno: ENOMEM)
        }
        defer { ckvm_free(block) }
        ckvm_msrs_entry(block, 0)!.pointee.index = msr
        let read = try checkedIoctl("KVM_GET_MSRS vCPU \(index)") {
            ioctl(descriptor.rawValue, CKVM_GET_MSRS, UnsafeMutableRawPointer(block))
        }
        guard read == 1 else {
            throw HypervisorError(.systemCall, "KVM_GET_MSRS vCPU \(index) cannot read MSR 0x\(String(msr, radix: 16))")
        }
        return ckvm_msrs_entry(block, 0)!.pointee.data
    }

    /// `KVM_SET_CPUID2`.
    func setCPUID(_ entries: [CPUIDEntry]) throws(HypervisorError) {
        guard let block = ckvm_cpuid2_allocate(UInt32(entries.count)) else {
            throw HypervisorError(.systemCall, "cannot allocate a CPUID table", errno: ENOMEM)
        }
        defer { ckvm_free(block) }
        for (i, entry) in entries.enumerated() {
            let slot = ckvm_cpuid2_entry(block, UInt32(i))!
            slot.pointee.function = entry.function
            slot.pointee.index = entry.index
            slot.pointee.flags = entry.flags
            slot.pointee.eax = entry.eax
            slot.pointee.ebx = entry.ebx
            slot.pointee.ecx = entry.ecx
            slot.pointee.edx = entry.edx
        }
        try checkedIoctl("KVM_SET_CPUID2 vCPU \(index)") {
            ioctl(descriptor.rawValue, CKVM_SET_CPUID2, UnsafeMutableRawPointer(block))
        }
    }

    /// Programs the local APIC's LINT0 as ExtINT and LINT1 as NMI (the PC wiring Linux expects).
    func configureLocalInterruptPins() throws(HypervisorError) {
        var lapic = kvm_lapic_state()
        try checkedIoctl("KVM_GET_LAPIC vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_GET_LAPIC, &lapic) }
        withUnsafeMutableBytes(of: &lapic.regs) { bytes in
            func setDeliveryMode(_ offset: Int, _ mode: UInt32) {
                let value = bytes.load(fromByteOffset: offset, as: UInt32.self)
                bytes.storeBytes(of: (value & ~0x700) | (mode << 8), toByteOffset: offset, as: UInt32.self)
            }
            setDeliveryMode(0x350, 7)  // LINT0: ExtINT
            setDeliveryMode(0x360, 4)  // LINT1: NMI
        }
        try checkedIoctl("KVM_SET_LAPIC vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_SET_LAPIC, &lapic) }
    }

    /// `KVM_SET_MP_STATE` to runnable: used to start application processors directly (without
    /// INIT/SIPI) for the CPL3 test guest.
    func makeRunnable() throws(HypervisorError) {
        var state = kvm_mp_state(mp_state: UInt32(KVM_MP_STATE_RUNNABLE))
        try checkedIoctl("KVM_SET_MP_STATE vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_SET_MP_STATE, &state) }
    }
}
