/// An interrupt input of the platform's interrupt controllers (a GSI).
protocol InterruptLine: Sendable {
    /// Drives the line high (asserted) or low.
    func setLevel(_ asserted: Bool)
}

extension InterruptLine {
    /// Raises then lowers the line: an edge for edge-triggered (ISA) inputs.
    func pulse() {
        setLevel(true)
        setLevel(false)
    }
}

/// A GSI of the in-kernel PIC/IOAPIC, driven with `KVM_IRQ_LINE`.
struct KVMInterruptLine: InterruptLine {
    let machine: KVMVirtualMachine
    let gsi: UInt32

    func setLevel(_ asserted: Bool) {
        // KVM_IRQ_LINE only fails for an invalid GSI, which the machine builder never uses.
        try? machine.setInterruptLine(gsi, level: asserted)
    }
}

/// A line connected to nothing (unit tests, devices without interrupts).
struct DisconnectedInterruptLine: InterruptLine {
    func setLevel(_ asserted: Bool) {}
}
