internal import CKVM
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A KVM virtual machine: guest memory, vCPUs (one host thread each), the PC platform devices,
/// virtio-blk disks on PCI, and a boot source.
///
/// Build one with ``init(configuration:)`` (which validates everything and creates all
/// resources, or nothing), then call ``run(timeLimit:)`` once. All file descriptors, mappings and
/// threads are released when ``run(timeLimit:)`` returns or the object is deallocated.
public final class VirtualMachine: Sendable {
    /// I/O port base of the first virtio-pci device's BAR0; each device gets 0x100 ports.
    static let pciIOBase: UInt16 = 0xC000
    /// First IOAPIC pin used for PCI INTx.
    static let pciFirstInterruptPin = 16
    /// Guest-physical addresses KVM needs for real-mode support; inside the MMIO hole.
    static let identityMapAddress: UInt64 = 0xFFFB_C000
    static let tssAddress: UInt64 = 0xFFFB_D000

    public let configuration: VirtualMachineConfiguration
    /// Guest RAM (for inspection, snapshots, dirty tracking).
    public let memory: GuestMemory
    private let kvm: KVMSystem
    private let machine: KVMVirtualMachine
    private let vcpus: [KVMVCPU]
    private let dispatcher: ExitDispatcher
    private let power: PowerControl
    private let serial: Serial16550
    private let blockDevices: [VirtioPCILegacyDevice]
    private let started = Atomic<Bool>(false)
    private let running = Mutex<[VCPUThread]>([])

    /// Validates `configuration`, creates the KVM VM, guest memory, devices and vCPUs, and loads the
    /// boot image.
    ///
    /// - Throws: ``HypervisorError`` naming what is wrong: ``HypervisorError/Code/invalidConfiguration``
    ///   (zero-size disk, bad memory size, …), ``HypervisorError/Code/resourceLimit`` (more vCPUs or
    ///   memory than the host allows), ``HypervisorError/Code/invalidImage`` (corrupt or truncated
    ///   kernel/guest image, with file and offset), ``HypervisorError/Code/kvmUnavailable``.
    public init(configuration: VirtualMachineConfiguration) throws(HypervisorError) {
        try Self.validate(configuration)
        let kvm = try KVMSystem()
        let hostMaximum = kvm.maximumVCPUCount
        guard configuration.vcpuCount <= hostMaximum else {
            throw HypervisorError(.resourceLimit, "\(configuration.vcpuCount) vCPUs requested; this host's KVM allows at most \(hostMaximum) (KVM_CAP_MAX_VCPUS)")
        }
        if let available = HostResources.availableMemoryBytes(), configuration.memorySize > available {
            throw HypervisorError(.resourceLimit, "\(configuration.memorySize) bytes of guest memory requested; the host has \(available) bytes available (MemAvailable + SwapFree)")
        }

        // Parse images before allocating anything large.
        let prepared = try PreparedBoot(configuration.bootSource)

        let memory = try GuestMemory(size: configuration.memorySize, mergeable: configuration.mergeableMemory)
        let machine = try kvm.createVirtualMachine()
        try machine.setTSSAddress(Self.tssAddress)
        try machine.setIdentityMapAddress(Self.identityMapAddress)
        try machine.createInterruptController()
        for (slot, region) in memory.regions.enumerated() {
            try machine.setMemoryRegion(slot: UInt32(slot), guestPhysicalAddress: region.guestAddress, size: region.size,
                                        hostAddress: memory.base + Int(region.hostOffset),
                                        logDirtyPages: configuration.logDirtyPages)
        }

        // Devices.
        let power = PowerControl()
        let serial = Serial16550(sink: configuration.console,
                                 interrupt: KVMInterruptLine(machine: machine, gsi: Serial16550.com1Interrupt))
        var pciDevices: [Int: any PCIFunction] = [0: PCIHostBridge()]
        var blockDevices: [VirtioPCILegacyDevice] = []
        var routes: [PCIInterruptRoute] = []
        for (index, disk) in configuration.disks.enumerated() {
            let slot = index + 1
            let pin = Self.pciFirstInterruptPin + index % 8
            let device = VirtioPCILegacyDevice(
                model: VirtioBlock(backend: disk), memory: memory,
                ioBase: Self.pciIOBase + UInt16(index) * UInt16(VirtioPCILegacyDevice.barSize),
                interruptLine: UInt8(pin), interrupt: KVMInterruptLine(machine: machine, gsi: UInt32(pin)))
            pciDevices[slot] = device
            blockDevices.append(device)
            routes.append(PCIInterruptRoute(slot: slot, pin: 1, ioapicPin: pin))
        }
        let pci = PCIRootBus(devices: pciDevices)
        let portBus = PortIOBus(mappings: [
            .init(range: Serial16550.com1Port...(Serial16550.com1Port + 7), device: serial),
            .init(range: PCIRootBus.configurationPort...(PCIRootBus.configurationPort + 7), device: pci),
            .init(range: 0x60...0x64, device: I8042Controller(power: power)),
            .init(range: 0x70...0x71, device: CMOSClock()),
            .init(range: 0x80...0x80, device: SilentPorts()),
            .init(range: 0xED...0xED, device: SilentPorts()),
            .init(range: 0x92...0x92, device: SilentPorts(readValue: 0x02)),
            .init(range: TestGuestABI.exitPort...(TestGuestABI.exitPort + 3), device: TestExitPort(power: power)),
        ], fallback: pci)
        let dispatcher = ExitDispatcher(portBus: portBus, mmioBus: MMIOBus(mappings: []), power: power,
                                        markers: GuestMarkerPort())

        // Boot image into memory.
        let plan = try prepared.load(into: memory, vcpuCount: configuration.vcpuCount, pciRoutes: routes)

        // vCPUs.
        let supportedCPUID = try kvm.supportedCPUID()
        let hideCX16 = configuration.hidesCMPXCHG16B ?? hostUsesSoftwareHypervisor
        var vcpus: [KVMVCPU] = []
        for index in 0..<configuration.vcpuCount {
            let vcpu = try machine.createVCPU(index: index)
            try vcpu.setCPUID(CPUIDPolicy.entries(from: supportedCPUID, vcpuIndex: index,
                                                  vcpuCount: configuration.vcpuCount, hideCMPXCHG16B: hideCX16))
            try vcpu.setModelSpecificRegisters(CPUIDPolicy.bootMSRs)
            try vcpu.configureLocalInterruptPins()
            if let entry = plan.entryStates[index] {
                try vcpu.setSpecialRegisters(LongModeSetup.specialRegisters(base: try vcpu.specialRegisters(),
                                                                            userMode: plan.userMode))
                try vcpu.resetFPU()
                var regs = kvm_regs()
                regs.rip = entry.instructionPointer
                regs.rsp = entry.stackPointer
                regs.rbp = entry.stackPointer
                regs.rflags = entry.flags
                regs.rdi = entry.arguments.0
                regs.rsi = entry.arguments.1
                regs.rdx = entry.arguments.2
                try vcpu.setRegisters(regs)
                if index != 0 { try vcpu.makeRunnable() }
            }
            vcpus.append(vcpu)
        }

        self.configuration = configuration
        self.memory = memory
        self.kvm = kvm
        self.machine = machine
        self.vcpus = vcpus
        self.dispatcher = dispatcher
        self.power = power
        self.serial = serial
        self.blockDevices = blockDevices
    }

    private static func validate(_ configuration: VirtualMachineConfiguration) throws(HypervisorError) {
        guard configuration.vcpuCount >= 1 else {
            throw HypervisorError(.invalidConfiguration, "vcpuCount is \(configuration.vcpuCount); a VM needs at least one vCPU")
        }
        guard configuration.vcpuCount <= MPTable.maximumCPUCount else {
            throw HypervisorError(.resourceLimit, "\(configuration.vcpuCount) vCPUs requested; the MP table (xAPIC) supports at most \(MPTable.maximumCPUCount)")
        }
        guard configuration.memorySize >= VirtualMachineConfiguration.minimumMemorySize else {
            throw HypervisorError(.invalidConfiguration, "memorySize \(configuration.memorySize) is below the minimum of \(VirtualMachineConfiguration.minimumMemorySize) bytes")
        }
        guard configuration.memorySize % (2 << 20) == 0 else {
            throw HypervisorError(.invalidConfiguration, "memorySize \(configuration.memorySize) is not a multiple of 2 MiB")
        }
        guard configuration.memorySize <= LongModeSetup.maximumMappedBytes - (GuestMemory.highMemoryStart - GuestMemory.mmioHoleStart) else {
            throw HypervisorError(.resourceLimit, "memorySize \(configuration.memorySize) exceeds the supported maximum of 63 GiB")
        }
        guard configuration.disks.count <= VirtualMachineConfiguration.maximumDiskCount else {
            throw HypervisorError(.invalidConfiguration, "\(configuration.disks.count) disks; at most \(VirtualMachineConfiguration.maximumDiskCount) are supported")
        }
        for (index, disk) in configuration.disks.enumerated() {
            guard disk.byteCount > 0 else {
                throw HypervisorError(.invalidConfiguration, "disk \(index) (\(disk.identifier)) has size 0")
            }
            guard disk.byteCount % 512 == 0 else {
                throw HypervisorError(.invalidConfiguration, "disk \(index) (\(disk.identifier)) size \(disk.byteCount) is not a multiple of 512 bytes")
            }
        }
    }

    /// Runs the guest until it powers off, ``requestStop()`` is called, or `timeLimit` seconds pass.
    /// All vCPU threads are joined before it returns. A VM runs once.
    ///
    /// - Returns: Why the VM stopped.
    /// - Throws: ``HypervisorError/Code/invalidState`` on a second call, or a system error if the
    ///   vCPU threads cannot be started.
    public func run(timeLimit: Double? = nil) throws(HypervisorError) -> PowerOffReason {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else {
            throw HypervisorError(.invalidState, "this virtual machine has already run; create a new one")
        }
        let handlerResult = ckvm_install_kick_handler(CKVM_KICK_SIGNAL)
        guard handlerResult == 0 else { throw .systemCall("sigaction for the vCPU kick signal", errno: -handlerResult) }
        let deadline = timeLimit.map { cvmfs_monotonic_ns() + UInt64(max(0, $0) * 1e9) }
        do {
            for vcpu in vcpus {
                let thread = try VCPUThread(vcpu: vcpu, dispatcher: dispatcher)
                running.withLock { $0.append(thread) }
            }
        } catch {
            power.requestPowerOff(.vcpuFailure(vcpu: running.withLock { $0.count }, description: error.description))
        }
        if !power.waitForPowerOff(deadlineNanoseconds: deadline) {
            power.requestPowerOff(.timedOut)
        }
        stopThreads()
        serial.flush()
        return power.powerOffReason ?? .stopRequested
    }

    private func stopThreads() {
        let threads = running.withLock { $0 }
        for thread in threads { thread.kick() }
        for thread in threads { thread.join() }
        running.withLock { $0.removeAll() }
    }

    /// Asks a running VM to stop; ``run(timeLimit:)`` then returns ``PowerOffReason/stopRequested``.
    /// Safe to call from any thread, before or during ``run(timeLimit:)``.
    public func requestStop() {
        power.requestPowerOff(.stopRequested)
    }

    /// Markers the guest wrote to ``TestGuestABI/markerPort`` so far, in arrival order.
    public var guestMarkers: [GuestMarker] { dispatcher.markers.recorded }

    /// Per-disk virtio-blk counters, in configuration order.
    public var diskStatistics: [VirtioBlockStatistics] {
        blockDevices.compactMap { ($0.model as? VirtioBlock)?.counters }
    }

    /// Per-disk virtio device status registers (bit 0x40 = NEEDS_RESET), in configuration order.
    public var diskDeviceStatus: [UInt8] { blockDevices.map(\.deviceStatus) }

    /// Guest pages written since the last call (memory slots registered with dirty logging).
    ///
    /// - Returns: Guest-physical page addresses.
    /// - Throws: ``HypervisorError/Code/invalidState`` unless ``VirtualMachineConfiguration/logDirtyPages`` was set.
    public func collectDirtyPages() throws(HypervisorError) -> [UInt64] {
        guard configuration.logDirtyPages else {
            throw HypervisorError(.invalidState, "dirty logging is off; set logDirtyPages in the configuration")
        }
        var pages: [UInt64] = []
        for (slot, region) in memory.regions.enumerated() {
            let pageCount = Int(region.size / GuestMemory.pageSize)
            let bitmap = try machine.dirtyLog(slot: UInt32(slot), pageCount: pageCount)
            for (wordIndex, word) in bitmap.enumerated() where word != 0 {
                for bit in 0..<64 where word & (1 << UInt64(bit)) != 0 {
                    pages.append(region.guestAddress + UInt64(wordIndex * 64 + bit) * GuestMemory.pageSize)
                }
            }
        }
        return pages
    }
}

/// A boot source whose files are mapped and parsed, ready to load once memory exists.
private struct PreparedBoot {
    enum Kind {
        case linux(kernel: MappedFile, parsed: LinuxLoader.Kernel, initrd: MappedFile?, commandLine: String)
        case testGuest(image: MappedFile, parsed: ELFImage, configuration: TestGuestConfiguration)
    }

    let kind: Kind

    init(_ source: BootSource) throws(HypervisorError) {
        switch source {
        case .linux(let linux):
            let kernel = try MappedFile(path: linux.kernelPath, role: "kernel")
            let parsed = try LinuxLoader.parseKernel(kernel)
            let initrd = try linux.initrdPath.map { (path) throws(HypervisorError) in try MappedFile(path: path, role: "initrd") }
            kind = .linux(kernel: kernel, parsed: parsed, initrd: initrd, commandLine: linux.commandLine)
        case .testGuest(let guest):
            let image = try MappedFile(path: guest.imagePath, role: "test guest image")
            kind = .testGuest(image: image, parsed: try ELFImage(bytes: image.bytes, name: image.path), configuration: guest)
        }
    }

    func load(into memory: GuestMemory, vcpuCount: Int, pciRoutes: [PCIInterruptRoute]) throws(HypervisorError) -> BootPlan {
        switch kind {
        case .linux(let kernel, let parsed, let initrd, let commandLine):
            try LinuxLoader.load(kernelFile: kernel, kernel: parsed, initrdFile: initrd, commandLine: commandLine,
                                 memory: memory, vcpuCount: vcpuCount, pciRoutes: pciRoutes)
        case .testGuest(let image, let parsed, let configuration):
            try TestGuestLoader.load(imageFile: image, image: parsed, configuration: configuration,
                                     memory: memory, vcpuCount: vcpuCount, pciRoutes: pciRoutes)
        }
    }
}
