internal import CKVM
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// Reading and writing the parts of a vCPU's state KVM holds, as the raw bytes of their
/// `<linux/kvm.h>` structures (x86-64 layouts; `docs/VM-STATE.md` lists them).
///
/// Called on a paused vCPU (its thread outside `KVM_RUN`), from the thread that saves or restores.
extension KVMVCPU {
    /// `ioctl(request)` reading into a zeroed `T`; returns its bytes.
    private func readStructure<T>(_ type: T.Type, _ request: UInt, _ name: String,
                                  prepare: (UnsafeMutableRawPointer) -> Void = { _ in }) throws(HypervisorError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
        let result = bytes.withUnsafeMutableBytes { raw -> Int32 in
            guard let base = raw.baseAddress else { return -1 }
            prepare(base)
            while true {
                let value = ioctl(descriptor.rawValue, request, base)
                if value >= 0 || errno != EINTR { return value >= 0 ? value : -errno }
            }
        }
        guard result >= 0 else { throw .systemCall("\(name) vCPU \(index)", errno: -result) }
        return bytes
    }

    /// `ioctl(request)` from `bytes`, which must be exactly `MemoryLayout<T>.size` long.
    private func writeStructure<T>(_ type: T.Type, _ request: UInt, _ name: String, _ bytes: [UInt8]) throws(HypervisorError) {
        guard bytes.count == MemoryLayout<T>.size else {
            throw HypervisorError(.invalidState, "\(name) vCPU \(index): \(bytes.count) bytes given, the structure has \(MemoryLayout<T>.size)")
        }
        var copy = bytes
        let result = copy.withUnsafeMutableBytes { raw -> Int32 in
            guard let base = raw.baseAddress else { return -EINVAL }
            while true {
                let value = ioctl(descriptor.rawValue, request, base)
                if value >= 0 || errno != EINTR { return value >= 0 ? value : -errno }
            }
        }
        guard result >= 0 else { throw .systemCall("\(name) vCPU \(index)", errno: -result) }
    }

    func mpState() throws(HypervisorError) -> UInt32 {
        var state = kvm_mp_state()
        try checkedIoctl("KVM_GET_MP_STATE vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_GET_MP_STATE, &state) }
        return state.mp_state
    }

    func setMPState(_ value: UInt32) throws(HypervisorError) {
        var state = kvm_mp_state(mp_state: value)
        try checkedIoctl("KVM_SET_MP_STATE vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_SET_MP_STATE, &state) }
    }

    func registerBytes() throws(HypervisorError) -> [UInt8] { try readStructure(kvm_regs.self, CKVM_GET_REGS, "KVM_GET_REGS") }
    func setRegisterBytes(_ bytes: [UInt8]) throws(HypervisorError) { try writeStructure(kvm_regs.self, CKVM_SET_REGS, "KVM_SET_REGS", bytes) }

    func specialRegisterBytes() throws(HypervisorError) -> [UInt8] { try readStructure(kvm_sregs.self, CKVM_GET_SREGS, "KVM_GET_SREGS") }
    func setSpecialRegisterBytes(_ bytes: [UInt8]) throws(HypervisorError) {
        try writeStructure(kvm_sregs.self, CKVM_SET_SREGS, "KVM_SET_SREGS", bytes)
    }

    func fpuBytes() throws(HypervisorError) -> [UInt8] { try readStructure(kvm_fpu.self, CKVM_GET_FPU, "KVM_GET_FPU") }
    func setFPUBytes(_ bytes: [UInt8]) throws(HypervisorError) { try writeStructure(kvm_fpu.self, CKVM_SET_FPU, "KVM_SET_FPU", bytes) }

    func xsaveBytes() throws(HypervisorError) -> [UInt8] { try readStructure(kvm_xsave.self, CKVM_GET_XSAVE, "KVM_GET_XSAVE") }
    func setXSAVEBytes(_ bytes: [UInt8]) throws(HypervisorError) { try writeStructure(kvm_xsave.self, CKVM_SET_XSAVE, "KVM_SET_XSAVE", bytes) }

    func xcrBytes() throws(HypervisorError) -> [UInt8] { try readStructure(kvm_xcrs.self, CKVM_GET_XCRS, "KVM_GET_XCRS") }
    func setXCRBytes(_ bytes: [UInt8]) throws(HypervisorError) { try writeStructure(kvm_xcrs.self, CKVM_SET_XCRS, "KVM_SET_XCRS", bytes) }

    func debugRegisterBytes() throws(HypervisorError) -> [UInt8] {
        try readStructure(kvm_debugregs.self, CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS")
    }
    func setDebugRegisterBytes(_ bytes: [UInt8]) throws(HypervisorError) {
        try writeStructure(kvm_debugregs.self, CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", bytes)
    }

    func localAPICBytes() throws(HypervisorError) -> [UInt8] { try readStructure(kvm_lapic_state.self, CKVM_GET_LAPIC, "KVM_GET_LAPIC") }
    func setLocalAPICBytes(_ bytes: [UInt8]) throws(HypervisorError) {
        try writeStructure(kvm_lapic_state.self, CKVM_SET_LAPIC, "KVM_SET_LAPIC", bytes)
    }

    func eventBytes() throws(HypervisorError) -> [UInt8] {
        try readStructure(kvm_vcpu_events.self, CKVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS")
    }
    func setEventBytes(_ bytes: [UInt8]) throws(HypervisorError) {
        try writeStructure(kvm_vcpu_events.self, CKVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", bytes)
    }

    /// The guest TSC frequency in kHz (`KVM_GET_TSC_KHZ`).
    func tscKilohertz() throws(HypervisorError) -> UInt32 {
        UInt32(truncatingIfNeeded: try checkedIoctl("KVM_GET_TSC_KHZ vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_GET_TSC_KHZ) })
    }

    /// `KVM_SET_TSC_KHZ` (needs TSC scaling unless the frequency is the host's).
    func setTSCKilohertz(_ value: UInt32) throws(HypervisorError) {
        try checkedIoctl("KVM_SET_TSC_KHZ \(value) vCPU \(index)") { cvmfs_ioctl_ulong(descriptor.rawValue, CKVM_SET_TSC_KHZ, UInt(value)) }
    }

    /// Tells KVM the guest was paused (kvmclock guests then skip their soft-lockup warning). Fails
    /// harmlessly for a guest that never enabled kvmclock.
    func notifyClockPaused() {
        _ = ioctl(descriptor.rawValue, CKVM_KVMCLOCK_CTRL)
    }

    /// `KVM_GET_MSRS` for `indices`: the values KVM returned, in order. An MSR KVM cannot read
    /// ends the list there (the count it returns says where).
    func modelSpecificRegisters(_ indices: [UInt32]) throws(HypervisorError) -> [(index: UInt32, value: UInt64)] {
        guard !indices.isEmpty else { return [] }
        guard let block = ckvm_msrs_allocate(UInt32(indices.count)) else {
            throw HypervisorError(.systemCall, "cannot allocate an MSR list", errno: ENOMEM)
        }
        defer { ckvm_free(block) }
        for (i, msr) in indices.enumerated() { ckvm_msrs_entry(block, UInt32(i))?.pointee.index = msr }
        let read = try checkedIoctl("KVM_GET_MSRS vCPU \(index)") { ioctl(descriptor.rawValue, CKVM_GET_MSRS, UnsafeMutableRawPointer(block)) }
        return (0..<Int(min(UInt32(read), UInt32(indices.count)))).compactMap { i in
            ckvm_msrs_entry(block, UInt32(i)).map { (index: $0.pointee.index, value: $0.pointee.data) }
        }
    }
}

