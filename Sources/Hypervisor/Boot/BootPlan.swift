/// Initial register values for one vCPU.
struct VCPUEntryState: Sendable, Equatable {
    var instructionPointer: UInt64
    var stackPointer: UInt64
    var flags: UInt64
    /// RDI, RSI, RDX.
    var arguments: (UInt64, UInt64, UInt64)

    static func == (a: VCPUEntryState, b: VCPUEntryState) -> Bool {
        a.instructionPointer == b.instructionPointer && a.stackPointer == b.stackPointer && a.flags == b.flags
            && a.arguments == b.arguments
    }
}

/// What the loaders produce: how each vCPU starts.
struct BootPlan: Sendable {
    /// Entry state per vCPU; vCPUs without one wait for INIT/SIPI from the guest.
    var entryStates: [Int: VCPUEntryState]
    /// Whether entry is at CPL3 (test guest) or CPL0 (Linux).
    var userMode: Bool
}
