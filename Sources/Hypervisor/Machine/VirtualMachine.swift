internal import SystemSupport
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
///
/// A machine restored from a saved state (migration, resume) takes the second build path:
/// ``restorable(configuration:memory:)`` builds the same devices and vCPUs without loading a boot
/// image, ``restore(_:)`` applies a ``MachineState``, then ``run(timeLimit:)``.
public final class VirtualMachine: Sendable {
    /// Guest-physical addresses KVM needs for real-mode support; inside the MMIO hole.
    static let identityMapAddress: UInt64 = 0xFFFB_C000
    static let tssAddress: UInt64 = 0xFFFB_D000

    public let configuration: VirtualMachineConfiguration
    /// Guest RAM (for inspection, snapshots, dirty tracking).
    public let memory: GuestMemory
    let kvm: KVMSystem
    let machine: KVMVirtualMachine
    let vcpus: [KVMVCPU]
    private let dispatcher: ExitDispatcher
    let power: PowerControl
    let control: RunControl
    let serial: Serial16550
    let platform: Platform
    let blockDevices: [VirtioPCILegacyDevice]
    let networkDevices: [VirtioNet]
    var networkInterfaceDevices: [VirtioNet] { networkDevices }
    private let io: WorkerPool
    private let started = Atomic<Bool>(false)
    private let running = Mutex<[VCPUThread]>([])
    /// The restore count the guest reads (``TestGuestABI/epochPort``).
    let epoch: MachineEpoch
    /// The CPUID table each vCPU was given (saved with its state).
    let cpuidTables: Mutex<[[CPUIDEntry]]>
    /// True from a ``restorable(configuration:memory:)`` build until ``restore(_:)`` succeeded.
    let awaitingRestore: Atomic<Bool>
    /// The MSRs this host's KVM can read for every vCPU (found at the first save).
    let savedMSRs = Mutex<[UInt32]?>(nil)
    /// Serializes saving, restoring and dirty-log changes.
    let stateLock = Mutex(())
    /// Holds the vCPUs out of the guest part of the time (auto-converge).
    let throttle: VCPUThrottle

    /// How a machine is built.
    enum BuildPath {
        /// Load the boot image and enter it.
        case boot
        /// Build everything but leave guest memory and vCPU registers to ``restore(_:)``; use
        /// `memory` when given (pages already received by a migration).
        case restore(memory: GuestMemory?)
    }

    /// Validates `configuration`, creates the KVM VM, guest memory, devices and vCPUs, and loads the
    /// boot image.
    ///
    /// - Throws: ``HypervisorError`` naming what is wrong: ``HypervisorError/Code/invalidConfiguration``
    ///   (zero-size disk, bad memory size, …), ``HypervisorError/Code/resourceLimit`` (more vCPUs or
    ///   memory than the host allows), ``HypervisorError/Code/invalidImage`` (corrupt or truncated
    ///   kernel/guest image, with file and offset), ``HypervisorError/Code/kvmUnavailable``.
    public convenience init(configuration: VirtualMachineConfiguration) throws(HypervisorError) {
        try self.init(configuration: configuration, path: .boot)
    }

    /// The second build path: every resource of the machine (KVM VM, memory, devices, vCPUs)
    /// without a boot image and without vCPU registers, waiting for ``restore(_:)``.
    ///
    /// - Parameter memory: Guest memory to use (it already holds the guest's pages, received by a
    ///   migration or read from a snapshot); nil allocates zeroed memory. Its size must be the
    ///   configuration's.
    public static func restorable(configuration: VirtualMachineConfiguration, memory: GuestMemory? = nil) throws(HypervisorError) -> VirtualMachine {
        if let memory, memory.size != configuration.memorySize {
            throw HypervisorError(.invalidConfiguration, "the given guest memory has \(memory.size) bytes; the configuration says \(configuration.memorySize)")
        }
        return try VirtualMachine(configuration: configuration, path: .restore(memory: memory))
    }

    init(configuration: VirtualMachineConfiguration, path: BuildPath) throws(HypervisorError) {
        try Self.validate(configuration)
        let kvm = try KVMSystem()
        let hostMaximum = kvm.maximumVCPUCount
        guard configuration.vcpuCount <= hostMaximum else {
            throw HypervisorError(.resourceLimit, "\(configuration.vcpuCount) vCPUs requested; this host's KVM allows at most \(hostMaximum) (KVM_CAP_MAX_VCPUS)")
        }
        var givenMemory: GuestMemory?
        if case .restore(let memory) = path { givenMemory = memory }
        if givenMemory == nil, let available = HostResources.availableMemoryBytes(), configuration.memorySize > available {
            throw HypervisorError(.resourceLimit, "\(configuration.memorySize) bytes of guest memory requested; the host has \(available) bytes available (MemAvailable + SwapFree)")
        }

        // Parse images before allocating anything large.
        var prepared: PreparedBoot?
        if case .boot = path { prepared = try PreparedBoot(configuration.bootSource) }

        let memory: GuestMemory
        if let givenMemory { memory = givenMemory } else {
            memory = try GuestMemory(size: configuration.memorySize, mergeable: configuration.mergeableMemory)
        }
        let machine = try kvm.createVirtualMachine()
        try machine.setTSSAddress(Self.tssAddress)
        try machine.setIdentityMapAddress(Self.identityMapAddress)
        try machine.createInterruptController()
        for (slot, region) in memory.regions.enumerated() {
            try machine.setMemoryRegion(slot: UInt32(slot), guestPhysicalAddress: region.guestAddress, size: region.size,
                                        hostAddress: memory.base + Int(region.hostOffset),
                                        logDirtyPages: configuration.logDirtyPages)
        }

        let power = PowerControl()
        let control = RunControl(vcpuCount: configuration.vcpuCount)
        let epoch = MachineEpoch()
        let platform = try Platform(configuration: configuration, memory: memory, machine: machine, power: power, control: control,
                                    epoch: epoch)

        // Boot image into memory.
        let plan = try prepared?.load(into: memory, vcpuCount: configuration.vcpuCount, pciRoutes: platform.interruptRoutes)

        // vCPUs (a restored machine gets its CPUID and registers from the saved state).
        var tables: [[CPUIDEntry]] = []
        var vcpus: [KVMVCPU] = []
        if let plan {
            let supportedCPUID = try kvm.supportedCPUID()
            let hideCX16 = configuration.hidesCMPXCHG16B ?? hostUsesSoftwareHypervisor
            for index in 0..<configuration.vcpuCount {
                let vcpu = try machine.createVCPU(index: index)
                let table = CPUIDPolicy.entries(from: supportedCPUID, vcpuIndex: index, vcpuCount: configuration.vcpuCount,
                                                hideCMPXCHG16B: hideCX16)
                try vcpu.configure(cpuid: table, entry: plan.entryStates[index], userMode: plan.userMode)
                tables.append(table)
                vcpus.append(vcpu)
            }
            if case .testGuest = configuration.bootSource, let first = vcpus.first {
                try memory.store(UInt64(try first.tscKilohertz()), at: TestGuestABI.parameterBlockAddress + TestGuestABI.tscKilohertzOffset)
            }
        } else {
            for index in 0..<configuration.vcpuCount { vcpus.append(try machine.createVCPU(index: index)) }
        }

        self.configuration = configuration
        self.memory = memory
        self.kvm = kvm
        self.machine = machine
        self.vcpus = vcpus
        self.dispatcher = platform.dispatcher
        self.power = power
        self.control = control
        self.serial = platform.serial
        self.platform = platform
        self.blockDevices = platform.blockDevices
        self.networkDevices = platform.networkDevices
        self.io = platform.io
        self.epoch = epoch
        self.cpuidTables = Mutex(tables)
        self.awaitingRestore = Atomic(plan == nil)
        self.throttle = VCPUThrottle(control: control)
    }

    private static func validate(_ configuration: VirtualMachineConfiguration) throws(HypervisorError) {
        guard configuration.vcpuCount >= 1 else {
            throw HypervisorError(.invalidConfiguration, "vcpuCount is \(configuration.vcpuCount); a VM needs at least one vCPU")
        }
        guard configuration.vcpuCount <= VirtualMachineConfiguration.maximumVCPUCount else {
            throw HypervisorError(.resourceLimit, "\(configuration.vcpuCount) vCPUs requested; the MP table (xAPIC) supports at most \(VirtualMachineConfiguration.maximumVCPUCount)")
        }
        guard configuration.memorySize >= VirtualMachineConfiguration.minimumMemorySize else {
            throw HypervisorError(.invalidConfiguration, "memorySize \(configuration.memorySize) is below the minimum of \(VirtualMachineConfiguration.minimumMemorySize) bytes")
        }
        guard configuration.memorySize % (2 << 20) == 0 else {
            throw HypervisorError(.invalidConfiguration, "memorySize \(configuration.memorySize) is not a multiple of 2 MiB")
        }
        guard configuration.memorySize <= VirtualMachineConfiguration.maximumMemorySize else {
            throw HypervisorError(.resourceLimit, "memorySize \(configuration.memorySize) exceeds the supported maximum of \(VirtualMachineConfiguration.maximumMemorySize >> 30) GiB")
        }
        guard configuration.disks.count <= VirtualMachineConfiguration.maximumDiskCount else {
            throw HypervisorError(.invalidConfiguration, "\(configuration.disks.count) disks; at most \(VirtualMachineConfiguration.maximumDiskCount) are supported")
        }
        try Self.validateNetworkInterfaces(configuration)
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
        guard !awaitingRestore.load(ordering: .acquiring) else {
            throw HypervisorError(.invalidState, "this machine was built to be restored; call restore(_:) before running it")
        }
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else {
            throw HypervisorError(.invalidState, "this virtual machine has already run; create a new one")
        }
        let handlerResult = ckvm_install_kick_handler(CKVM_KICK_SIGNAL)
        guard handlerResult == 0 else { throw .systemCall("sigaction for the vCPU kick signal", errno: -handlerResult) }
        let deadline = timeLimit.map { cvmfs_monotonic_ns() + UInt64(max(0, $0) * 1e9) }
        do {
            for device in networkDevices { try device.start() }
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
        throttle.stop()
        stopThreads()
        for device in networkDevices { device.stop() }
        io.shutdown()
        serial.flush()
        return power.powerOffReason ?? .stopRequested
    }

    private func stopThreads() {
        let threads = running.withLock { $0 }
        control.stop(vcpus: vcpus)
        for thread in threads { thread.kick() }
        for thread in threads { thread.join() }
        running.withLock { $0.removeAll() }
    }

    /// What the vCPUs were last asked to do.
    public var runState: VCPURunState { control.requested }

    /// Takes every vCPU out of the guest and keeps it out until ``resume()``. Devices keep
    /// completing requests already submitted; the guest runs no instruction while paused.
    /// Safe to call from any thread, before or during ``run(timeLimit:)``.
    ///
    /// - Parameter timeoutNanoseconds: How long to wait for the vCPUs to leave the guest.
    /// - Throws: ``HypervisorError/Code/timedOut`` when a vCPU did not leave in time (it stays
    ///   asked to pause), ``HypervisorError/Code/invalidState`` once the VM is stopping.
    public func pause(timeoutNanoseconds: UInt64 = 1_000_000_000) throws(HypervisorError) {
        guard control.requested != .stopping, power.powerOffReason == nil else {
            throw HypervisorError(.invalidState, "the virtual machine is powering off")
        }
        let (kicks, started) = vcpuKicks()
        let deadline = cvmfs_monotonic_ns() + timeoutNanoseconds
        guard control.pause(vcpus: kicks, deadline: deadline) || !started else {
            throw HypervisorError(.timedOut, "vCPUs did not leave the guest within \(timeoutNanoseconds / 1_000_000) ms")
        }
        // The NICs write nothing into guest memory while paused (a frame being copied finishes first).
        for device in networkDevices { device.setPaused(true) }
    }

    /// Each vCPU with a way to kick its thread out of `KVM_RUN`, and whether every thread runs.
    private func vcpuKicks() -> ([(vcpu: KVMVCPU, kick: () -> Void)], Bool) {
        let threads = running.withLock { $0 }
        let kicks: [(vcpu: KVMVCPU, kick: () -> Void)] = vcpus.map { vcpu in
            let thread = threads.first { $0.vcpu === vcpu }
            return (vcpu, { thread?.kick() })
        }
        return (kicks, threads.count == vcpus.count)
    }

    /// Takes the vCPUs out of the guest (`true`) or lets them back, for the throttle.
    func holdForThrottle(_ held: Bool) {
        control.setThrottled(held, vcpus: vcpuKicks().0)
    }

    /// Waits until no device request is in flight (after ``pause(timeoutNanoseconds:)``, before
    /// saving state). Returns false if `timeoutNanoseconds` passed first.
    public func drainDevices(timeoutNanoseconds: UInt64) -> Bool {
        let deadline = cvmfs_monotonic_ns() + timeoutNanoseconds
        return blockDevices.allSatisfy { $0.drain(deadline: deadline) }
    }

    /// Queues bytes typed on the serial console for the guest; returns how many were accepted
    /// (the UART holds at most 4 KiB of unread input).
    @discardableResult
    public func sendConsoleInput(_ bytes: [UInt8]) -> Int { serial.receive(bytes) }

    /// Lets a paused VM's vCPUs enter the guest again.
    public func resume() {
        for device in networkDevices { device.setPaused(false) }
        control.resume()
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
