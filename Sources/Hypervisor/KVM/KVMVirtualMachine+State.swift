internal import CKVM
#if canImport(Glibc)
internal import Glibc
#endif

/// The in-kernel devices' state (PIC, IOAPIC, PIT, kvmclock) as raw `<linux/kvm.h>` structures,
/// and the list of MSRs KVM saves.
extension KVMVirtualMachine {
    /// Chip numbers of `KVM_GET_IRQCHIP`: PIC master, PIC slave, IOAPIC.
    static let interruptChips: [UInt32] = [0, 1, 2]

    /// `KVM_GET_IRQCHIP` for `chip` (the whole 520-byte `struct kvm_irqchip`).
    func interruptChipBytes(_ chip: UInt32) throws(HypervisorError) -> [UInt8] {
        var value = kvm_irqchip()
        value.chip_id = chip
        try checkedIoctl("KVM_GET_IRQCHIP \(chip)") { ioctl(descriptor.rawValue, CKVM_GET_IRQCHIP, &value) }
        return withUnsafeBytes(of: &value) { Array($0) }
    }

    /// `KVM_SET_IRQCHIP`; the chip number inside `bytes` must be `chip`.
    func setInterruptChipBytes(_ chip: UInt32, _ bytes: [UInt8]) throws(HypervisorError) {
        var value = kvm_irqchip()
        try Self.fill(&value, from: bytes, name: "KVM_SET_IRQCHIP \(chip)")
        guard value.chip_id == chip else {
            throw HypervisorError(.invalidState, "KVM_SET_IRQCHIP: the state names chip \(value.chip_id), expected \(chip)")
        }
        try checkedIoctl("KVM_SET_IRQCHIP \(chip)") { ioctl(descriptor.rawValue, CKVM_SET_IRQCHIP, &value) }
    }

    func timerBytes() throws(HypervisorError) -> [UInt8] {
        var value = kvm_pit_state2()
        try checkedIoctl("KVM_GET_PIT2") { ioctl(descriptor.rawValue, CKVM_GET_PIT2, &value) }
        return withUnsafeBytes(of: &value) { Array($0) }
    }

    func setTimerBytes(_ bytes: [UInt8]) throws(HypervisorError) {
        var value = kvm_pit_state2()
        try Self.fill(&value, from: bytes, name: "KVM_SET_PIT2")
        try checkedIoctl("KVM_SET_PIT2") { ioctl(descriptor.rawValue, CKVM_SET_PIT2, &value) }
    }

    /// `KVM_GET_CLOCK`: the kvmclock value (guest nanoseconds) and flags.
    func clockBytes() throws(HypervisorError) -> [UInt8] {
        var value = kvm_clock_data()
        try checkedIoctl("KVM_GET_CLOCK") { ioctl(descriptor.rawValue, CKVM_GET_CLOCK, &value) }
        return withUnsafeBytes(of: &value) { Array($0) }
    }

    /// `KVM_SET_CLOCK` to the saved clock advanced by `elapsedNanoseconds` (flags cleared: only
    /// the clock value is set).
    func setClock(from bytes: [UInt8], advancedBy elapsedNanoseconds: UInt64) throws(HypervisorError) {
        var saved = kvm_clock_data()
        try Self.fill(&saved, from: bytes, name: "KVM_SET_CLOCK")
        var value = kvm_clock_data()
        value.clock = saved.clock &+ elapsedNanoseconds
        try checkedIoctl("KVM_SET_CLOCK") { ioctl(descriptor.rawValue, CKVM_SET_CLOCK, &value) }
    }

    private static func fill<T>(_ value: inout T, from bytes: [UInt8], name: String) throws(HypervisorError) {
        guard bytes.count == MemoryLayout<T>.size else {
            throw HypervisorError(.invalidState, "\(name): \(bytes.count) bytes given, the structure has \(MemoryLayout<T>.size)")
        }
        withUnsafeMutableBytes(of: &value) { raw in raw.copyBytes(from: bytes) }
    }
}

extension KVMSystem {
    /// The MSRs KVM can save and restore (`KVM_GET_MSR_INDEX_LIST`).
    func savedMSRIndices() throws(HypervisorError) -> [UInt32] {
        var capacity: UInt32 = 256
        while true {
            var indices = [UInt32](repeating: 0, count: Int(capacity))
            let count = indices.withUnsafeMutableBufferPointer { ckvm_msr_index_list(descriptor.rawValue, $0.baseAddress, capacity) }
            guard count >= 0 else { throw .systemCall("KVM_GET_MSR_INDEX_LIST", errno: Int32(-count)) }
            if count > Int(capacity) {
                guard capacity < 65536 else { throw HypervisorError(.systemCall, "KVM_GET_MSR_INDEX_LIST reports \(count) MSRs") }
                capacity = UInt32(count)
                continue
            }
            return Array(indices.prefix(Int(count)))
        }
    }
}
