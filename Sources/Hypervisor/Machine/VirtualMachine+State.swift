internal import Synchronization
internal import SystemSupport
internal import CVMFSLinux

/// Saving a paused machine's state and restoring it into a machine built with
/// ``VirtualMachine/restorable(configuration:memory:)``, in the order `docs/VM-STATE.md` gives.
extension VirtualMachine {
    /// MSR numbers the TSC adjustment on restore looks for.
    static let timeStampCounterMSR: UInt32 = 0x10
    static let timeStampDeadlineMSR: UInt32 = 0x6E0

    /// The machine's state except its memory. The vCPUs must be paused (``pause(timeoutNanoseconds:)``)
    /// and the devices drained (``drainDevices(timeoutNanoseconds:)``).
    ///
    /// Per vCPU the MP state is read first (reading it may update the local APIC) and the pending
    /// events last; the VM-wide devices after the vCPUs.
    ///
    /// - Throws: ``HypervisorError/Code/invalidState`` when the machine is running or a device
    ///   still has requests in flight; a system error naming the ioctl and vCPU.
    public func saveState() throws(HypervisorError) -> MachineState {
        try stateLock.withLock { _ throws(HypervisorError) -> MachineState in
            guard control.requested == .paused else {
                throw HypervisorError(.invalidState, "the machine must be paused before its state is saved")
            }
            guard !awaitingRestore.load(ordering: .acquiring) else {
                throw HypervisorError(.invalidState, "the machine has no state yet: it waits to be restored")
            }
            guard networkDevices.isEmpty else {
                throw HypervisorError(.invalidState, "a machine with network interfaces cannot be saved yet: state format \(MachineStateCodec.version) has no virtio-net section")
            }
            let msrIndices = try msrsToSave()
            let tables = cpuidTables.withLock { $0 }
            var states: [VCPUState] = []
            for vcpu in vcpus {
                let mp = try vcpu.mpState()
                let registers = try vcpu.registerBytes()
                let special = try vcpu.specialRegisterBytes()
                let fpu = try vcpu.fpuBytes()
                let xsave = try vcpu.xsaveBytes()
                let xcrs = try vcpu.xcrBytes()
                let debug = try vcpu.debugRegisterBytes()
                let lapic = try vcpu.localAPICBytes()
                let msrs = try vcpu.modelSpecificRegisters(msrIndices).map { MSRValue(index: $0.index, value: $0.value) }
                guard msrs.count == msrIndices.count else {
                    throw HypervisorError(.systemCall, "KVM_GET_MSRS vCPU \(vcpu.index) read \(msrs.count) of \(msrIndices.count) MSRs")
                }
                let events = try vcpu.eventBytes()
                let table = vcpu.index < tables.count ? tables[vcpu.index] : []
                states.append(VCPUState(
                    cpuid: table.map { CPUIDLeaf(function: $0.function, index: $0.index, flags: $0.flags, eax: $0.eax, ebx: $0.ebx,
                                                 ecx: $0.ecx, edx: $0.edx) },
                    mpState: mp, registers: registers, specialRegisters: special, fpu: fpu, xsave: xsave, xcrs: xcrs,
                    debugRegisters: debug, localAPIC: lapic, msrs: msrs, events: events))
            }
            var chips: [[UInt8]] = []
            for chip in KVMVirtualMachine.interruptChips { chips.append(try machine.interruptChipBytes(chip)) }
            let interrupts = InterruptControllerState(chips: chips, timer: try machine.timerBytes(), clock: try machine.clockBytes())
            var devices: [VirtioDeviceState] = []
            for device in blockDevices { devices.append(try device.savedState()) }
            return MachineState(
                vcpuCount: configuration.vcpuCount, memorySize: memory.size, diskCount: blockDevices.count,
                tscKilohertz: try vcpus.first?.tscKilohertz() ?? 0, restoreCount: epoch.count,
                savedWallNanoseconds: cvmfs_realtime_ns(), vcpus: states, interrupts: interrupts, serial: serial.savedState(),
                keyboard: platform.keyboard.savedState(), cmos: platform.cmos.savedState(),
                pciAddressLatch: platform.pci.savedAddressLatch, virtioDevices: devices)
        }
    }

    /// The MSRs KVM can read on this host for this machine: its saved-MSR list minus those the
    /// first vCPU refuses (found once, then kept).
    private func msrsToSave() throws(HypervisorError) -> [UInt32] {
        if let known = savedMSRs.withLock({ $0 }) { return known }
        var candidates = try kvm.savedMSRIndices()
        var readable: [UInt32] = []
        guard let probe = vcpus.first else { return [] }
        while !candidates.isEmpty {
            let read = try probe.modelSpecificRegisters(candidates)
            readable += read.map(\.index)
            // KVM stops at the first MSR it cannot read: skip it and go on after it.
            candidates.removeFirst(min(candidates.count, read.count + 1))
        }
        savedMSRs.withLock { $0 = readable }
        return readable
    }

    /// Applies `state` to a machine built by ``restorable(configuration:memory:)`` whose guest
    /// memory already holds the guest's pages. The guest's clocks (TSC, kvmclock) advance by the
    /// wall-clock time since the state was saved, so guest time keeps pace with real time.
    ///
    /// Order: the PIT, kvmclock and interrupt chips, then per vCPU CPUID → MP state → registers →
    /// special registers → FPU → XSAVE → XCRs → debug registers → local APIC → MSRs → events,
    /// then the devices.
    ///
    /// - Throws: ``HypervisorError/Code/incompatibleState`` when the state is of another machine
    ///   (vCPUs, memory, disks, TSC frequency this host cannot provide); a system error naming the
    ///   ioctl, vCPU or MSR KVM refused. A failed restore leaves the machine unusable.
    public func restore(_ state: MachineState) throws(HypervisorError) {
        try stateLock.withLock { _ throws(HypervisorError) in
            guard awaitingRestore.load(ordering: .acquiring) else {
                throw HypervisorError(.invalidState, "only a machine built with restorable(configuration:memory:) can be restored, once")
            }
            guard state.vcpuCount == vcpus.count, state.vcpus.count == vcpus.count else {
                throw HypervisorError(.incompatibleState, "the state has \(state.vcpuCount) vCPUs; this machine has \(vcpus.count)")
            }
            guard state.memorySize == memory.size else {
                throw HypervisorError(.incompatibleState, "the state is of a machine with \(state.memorySize) bytes of memory; this one has \(memory.size)")
            }
            guard state.diskCount == blockDevices.count, state.virtioDevices.count == blockDevices.count else {
                throw HypervisorError(.incompatibleState, "the state has \(state.diskCount) disks; this machine has \(blockDevices.count)")
            }
            try matchTSCFrequency(state.tscKilohertz)
            let elapsed = UInt64(max(0, cvmfs_realtime_ns() - state.savedWallNanoseconds))
            let ticks = elapsed / 1000 * UInt64(state.tscKilohertz) / 1000

            try machine.setTimerBytes(state.interrupts.timer)
            try machine.setClock(from: state.interrupts.clock, advancedBy: elapsed)
            guard state.interrupts.chips.count == KVMVirtualMachine.interruptChips.count else {
                throw HypervisorError(.invalidSavedState, "the state has \(state.interrupts.chips.count) interrupt chips")
            }
            for (chip, bytes) in zip(KVMVirtualMachine.interruptChips, state.interrupts.chips) {
                try machine.setInterruptChipBytes(chip, bytes)
            }
            var tables: [[CPUIDEntry]] = []
            for (vcpu, saved) in zip(vcpus, state.vcpus) {
                let table = saved.cpuid.map {
                    CPUIDEntry(function: $0.function, index: $0.index, flags: $0.flags, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
                }
                try vcpu.setCPUID(table)
                tables.append(table)
                try vcpu.setMPState(saved.mpState)
                try vcpu.setRegisterBytes(saved.registers)
                try vcpu.setSpecialRegisterBytes(saved.specialRegisters)
                try vcpu.setFPUBytes(saved.fpu)
                try vcpu.setXSAVEBytes(saved.xsave)
                try vcpu.setXCRBytes(saved.xcrs)
                try vcpu.setDebugRegisterBytes(saved.debugRegisters)
                try vcpu.setLocalAPICBytes(saved.localAPIC)
                let msrs = saved.msrs.map { msr -> (index: UInt32, value: UInt64) in
                    // The TSC (and a deadline armed against it) moves on by the time spent paused.
                    if msr.index == Self.timeStampCounterMSR || (msr.index == Self.timeStampDeadlineMSR && msr.value != 0) {
                        return (msr.index, msr.value &+ ticks)
                    }
                    return (msr.index, msr.value)
                }
                try vcpu.setModelSpecificRegisters(msrs)
                try vcpu.setEventBytes(saved.events)
                vcpu.notifyClockPaused()
            }
            cpuidTables.withLock { $0 = tables }
            serial.restore(state.serial)
            platform.keyboard.restore(state.keyboard)
            platform.cmos.restore(state.cmos)
            platform.pci.restore(addressLatch: state.pciAddressLatch)
            for (index, (device, saved)) in zip(blockDevices, state.virtioDevices).enumerated() {
                try device.restore(saved, name: "disk \(index)")
            }
            epoch.count = state.restoreCount &+ 1
            awaitingRestore.store(false, ordering: .releasing)
        }
    }

    /// Gives the vCPUs the saved TSC frequency when it differs from this host's by more than
    /// 250 ppm (which needs TSC scaling).
    private func matchTSCFrequency(_ saved: UInt32) throws(HypervisorError) {
        guard saved != 0, let first = vcpus.first else { return }
        let here = try first.tscKilohertz()
        let difference = here > saved ? here - saved : saved - here
        guard UInt64(difference) * 1_000_000 > UInt64(saved) * 250 else { return }
        do {
            for vcpu in vcpus { try vcpu.setTSCKilohertz(saved) }
        } catch {
            throw HypervisorError(.incompatibleState, "the guest's TSC runs at \(saved) kHz; this host's at \(here) kHz and its KVM cannot scale it (\(error.message))")
        }
    }

    /// How many times this machine was restored (its migration epoch, as the test guest reads it).
    public var restoreCount: UInt32 { epoch.count }
}
