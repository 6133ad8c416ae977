internal import CKVM

extension KVMVCPU {
    /// Prepares a vCPU before its first run: CPUID, boot MSRs, LINT0/LINT1 wiring and, when it has
    /// an entry state, 64-bit mode registers (application processors without one wait for INIT/SIPI;
    /// those with one are made runnable directly).
    func configure(cpuid: [CPUIDEntry], entry: VCPUEntryState?, userMode: Bool) throws(HypervisorError) {
        try setCPUID(cpuid)
        try setModelSpecificRegisters(CPUIDPolicy.bootMSRs)
        try configureLocalInterruptPins()
        guard let entry else { return }
        try setSpecialRegisters(LongModeSetup.specialRegisters(base: try specialRegisters(), userMode: userMode))
        try resetFPU()
        var regs = kvm_regs()
        regs.rip = entry.instructionPointer
        regs.rsp = entry.stackPointer
        regs.rbp = entry.stackPointer
        regs.rflags = entry.flags
        regs.rdi = entry.arguments.0
        regs.rsi = entry.arguments.1
        regs.rdx = entry.arguments.2
        try setRegisters(regs)
        if index != 0 { try makeRunnable() }
    }
}
