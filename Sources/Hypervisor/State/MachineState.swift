/// The complete state of a paused virtual machine except its memory: every vCPU, the in-kernel
/// interrupt controllers, timer and clock, and every device. It is what live migration sends
/// after the last memory pages, and what a suspend or snapshot with memory stores beside the
/// memory image. ``MachineStateCodec`` turns it into the versioned format of `docs/VM-STATE.md`.
///
/// Values saved from KVM are kept as the raw bytes of their `<linux/kvm.h>` structures; the
/// restoring side checks every length before handing them back to KVM, and never interprets
/// them itself except where named (the TSC MSR, the IOAPIC redirection table is KVM's to check).
public struct MachineState: Sendable, Equatable {
    /// The machine the state belongs to; a restore checks it against the machine being built.
    public var vcpuCount: Int
    public var memorySize: UInt64
    public var diskCount: Int
    /// The guest TSC frequency (`KVM_GET_TSC_KHZ`).
    public var tscKilohertz: UInt32
    /// How many times this machine was restored from a saved state before (its own migrations
    /// and resumes); the restore increments it. The test guest reads it as its migration epoch.
    public var restoreCount: UInt32
    /// `CLOCK_REALTIME` when the state was saved, so the restoring host can advance the guest's
    /// clocks by the time the machine spent paused.
    public var savedWallNanoseconds: Int64
    public var vcpus: [VCPUState]
    public var interrupts: InterruptControllerState
    public var serial: SerialState
    public var keyboard: KeyboardControllerState
    public var cmos: CMOSState
    /// The PCI configuration address latch (port 0xCF8).
    public var pciAddressLatch: UInt32
    /// One per disk, in PCI slot order.
    public var virtioDevices: [VirtioDeviceState]

    public init(vcpuCount: Int, memorySize: UInt64, diskCount: Int, tscKilohertz: UInt32, restoreCount: UInt32,
                savedWallNanoseconds: Int64, vcpus: [VCPUState], interrupts: InterruptControllerState, serial: SerialState,
                keyboard: KeyboardControllerState, cmos: CMOSState, pciAddressLatch: UInt32, virtioDevices: [VirtioDeviceState]) {
        self.vcpuCount = vcpuCount
        self.memorySize = memorySize
        self.diskCount = diskCount
        self.tscKilohertz = tscKilohertz
        self.restoreCount = restoreCount
        self.savedWallNanoseconds = savedWallNanoseconds
        self.vcpus = vcpus
        self.interrupts = interrupts
        self.serial = serial
        self.keyboard = keyboard
        self.cmos = cmos
        self.pciAddressLatch = pciAddressLatch
        self.virtioDevices = virtioDevices
    }
}

/// One CPUID leaf as the vCPU was configured with it.
public struct CPUIDLeaf: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, index: UInt32, flags: UInt32, eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}

/// A model-specific register and its value.
public struct MSRValue: Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64

    public init(index: UInt32, value: UInt64) {
        self.index = index
        self.value = value
    }
}

/// Everything KVM holds for one vCPU, in the order it is restored.
public struct VCPUState: Sendable, Equatable {
    public var cpuid: [CPUIDLeaf]
    /// `KVM_MP_STATE_*` (0 runnable, 1 uninitialized, 2 init received, 3 halted, 4 SIPI received).
    public var mpState: UInt32
    /// `struct kvm_regs` (144 bytes).
    public var registers: [UInt8]
    /// `struct kvm_sregs` (312 bytes).
    public var specialRegisters: [UInt8]
    /// `struct kvm_fpu` (416 bytes).
    public var fpu: [UInt8]
    /// `struct kvm_xsave` (4096 bytes).
    public var xsave: [UInt8]
    /// `struct kvm_xcrs` (392 bytes).
    public var xcrs: [UInt8]
    /// `struct kvm_debugregs` (128 bytes).
    public var debugRegisters: [UInt8]
    /// `struct kvm_lapic_state` (1024 bytes: the APIC register page).
    public var localAPIC: [UInt8]
    public var msrs: [MSRValue]
    /// `struct kvm_vcpu_events` (64 bytes): pending exception, interrupt, NMI, SMI.
    public var events: [UInt8]

    public init(cpuid: [CPUIDLeaf], mpState: UInt32, registers: [UInt8], specialRegisters: [UInt8], fpu: [UInt8], xsave: [UInt8],
                xcrs: [UInt8], debugRegisters: [UInt8], localAPIC: [UInt8], msrs: [MSRValue], events: [UInt8]) {
        self.cpuid = cpuid
        self.mpState = mpState
        self.registers = registers
        self.specialRegisters = specialRegisters
        self.fpu = fpu
        self.xsave = xsave
        self.xcrs = xcrs
        self.debugRegisters = debugRegisters
        self.localAPIC = localAPIC
        self.msrs = msrs
        self.events = events
    }

    /// Sizes of the raw KVM structures (x86-64).
    public enum Size {
        public static let registers = 144
        public static let specialRegisters = 312
        public static let fpu = 416
        public static let xsave = 4096
        public static let xcrs = 392
        public static let debugRegisters = 128
        public static let localAPIC = 1024
        public static let events = 64
    }

    /// The guest instruction pointer (`kvm_regs.rip`, offset 128).
    public var instructionPointer: UInt64 { Self.word(registers, at: 128) }

    static func word(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        guard offset + 8 <= bytes.count else { return 0 }
        return (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }
}

/// The in-kernel PIC pair, IOAPIC, PIT and kvmclock.
public struct InterruptControllerState: Sendable, Equatable {
    /// `struct kvm_irqchip` for chips 0 (PIC master), 1 (PIC slave), 2 (IOAPIC); 520 bytes each.
    public var chips: [[UInt8]]
    /// `struct kvm_pit_state2` (112 bytes).
    public var timer: [UInt8]
    /// `struct kvm_clock_data` (48 bytes).
    public var clock: [UInt8]

    public init(chips: [[UInt8]], timer: [UInt8], clock: [UInt8]) {
        self.chips = chips
        self.timer = timer
        self.clock = clock
    }

    public enum Size {
        public static let chip = 520
        public static let timer = 112
        public static let clock = 48
    }
}

/// The 16550 UART's registers and queues.
public struct SerialState: Sendable, Equatable {
    public var interruptEnable: UInt8
    public var lineControl: UInt8
    public var modemControl: UInt8
    public var scratch: UInt8
    public var divisorLow: UInt8
    public var divisorHigh: UInt8
    public var fifoControl: UInt8
    public var transmitInterruptPending: Bool
    /// Input the guest has not read yet (at most 4096 bytes).
    public var receive: [UInt8]
    /// Output of a line not finished yet (at most 512 bytes).
    public var pendingOutput: [UInt8]

    public init(interruptEnable: UInt8, lineControl: UInt8, modemControl: UInt8, scratch: UInt8, divisorLow: UInt8, divisorHigh: UInt8,
                fifoControl: UInt8, transmitInterruptPending: Bool, receive: [UInt8], pendingOutput: [UInt8]) {
        self.interruptEnable = interruptEnable
        self.lineControl = lineControl
        self.modemControl = modemControl
        self.scratch = scratch
        self.divisorLow = divisorLow
        self.divisorHigh = divisorHigh
        self.fifoControl = fifoControl
        self.transmitInterruptPending = transmitInterruptPending
        self.receive = receive
        self.pendingOutput = pendingOutput
    }
}

/// The i8042's command byte, pending command and reply queue.
public struct KeyboardControllerState: Sendable, Equatable {
    public var commandByte: UInt8
    /// The command waiting for its data byte (0 when none).
    public var pendingCommand: UInt8
    /// Reply bytes not read yet (at most 16).
    public var output: [UInt8]

    public init(commandByte: UInt8, pendingCommand: UInt8, output: [UInt8]) {
        self.commandByte = commandByte
        self.pendingCommand = pendingCommand
        self.output = output
    }
}

/// The CMOS index register and its 128 bytes of RAM (the clock registers read the host's time).
public struct CMOSState: Sendable, Equatable {
    public var index: UInt8
    public var storage: [UInt8]

    public init(index: UInt8, storage: [UInt8]) {
        self.index = index
        self.storage = storage
    }
}

/// One legacy virtio-pci device: its PCI configuration space, transport registers and queues.
public struct VirtioDeviceState: Sendable, Equatable {
    /// One virtqueue: where the driver put it and how far both sides got.
    public struct Queue: Sendable, Equatable {
        /// QUEUE_PFN as the driver wrote it (0: not set up).
        public var pfn: UInt32
        /// The next available-ring entry the device will take.
        public var lastAvailableIndex: UInt16
        /// The used ring's index as the device last published it.
        public var usedIndex: UInt16

        public init(pfn: UInt32, lastAvailableIndex: UInt16, usedIndex: UInt16) {
            self.pfn = pfn
            self.lastAvailableIndex = lastAvailableIndex
            self.usedIndex = usedIndex
        }
    }

    /// The virtio device type (2 = block); a restore checks it.
    public var deviceType: UInt16
    /// The 256-byte PCI configuration space.
    public var configurationSpace: [UInt8]
    public var guestFeatures: UInt32
    public var queueSelect: UInt16
    public var status: UInt8
    public var isr: UInt8
    public var queues: [Queue]

    public init(deviceType: UInt16, configurationSpace: [UInt8], guestFeatures: UInt32, queueSelect: UInt16, status: UInt8, isr: UInt8,
                queues: [Queue]) {
        self.deviceType = deviceType
        self.configurationSpace = configurationSpace
        self.guestFeatures = guestFeatures
        self.queueSelect = queueSelect
        self.status = status
        self.isr = isr
        self.queues = queues
    }
}
