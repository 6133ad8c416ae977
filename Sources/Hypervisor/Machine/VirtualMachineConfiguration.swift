/// How to boot a Linux kernel.
public struct LinuxBootConfiguration: Sendable {
    /// A bzImage (64-bit boot protocol ≥ 2.12) or an uncompressed `vmlinux` ELF.
    public var kernelPath: String
    /// An optional initramfs (cpio, optionally compressed).
    public var initrdPath: String?
    /// The kernel command line.
    public var commandLine: String

    /// Options suited to this VMM's platform: serial console, conf1 PCI, MP table instead of ACPI,
    /// i8042 reset, fast timer setup.
    public static let defaultCommandLine =
        "console=ttyS0 earlyprintk=serial reboot=k panic=1 pci=conf1 pci=lastbus=0 acpi=off "
        + "i8042.nopnp i8042.noaux i8042.nomux i8042.dumbkbd 8250.nr_uarts=1 tsc=reliable no_timer_check"

    public init(kernelPath: String, initrdPath: String? = nil, commandLine: String = defaultCommandLine) {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
    }
}

/// How to start the freestanding test guest (see ``TestGuestABI``).
public struct TestGuestConfiguration: Sendable {
    /// The guest ELF image built by `Tools/scripts/build-guest.sh`.
    public var imagePath: String
    public var workload: TestGuestWorkload
    /// Up to eight workload arguments (meaning depends on ``workload``).
    public var arguments: [UInt64]

    public init(imagePath: String, workload: TestGuestWorkload, arguments: [UInt64] = []) {
        self.imagePath = imagePath
        self.workload = workload
        self.arguments = arguments
    }
}

/// What the VM boots.
public enum BootSource: Sendable {
    case linux(LinuxBootConfiguration)
    case testGuest(TestGuestConfiguration)
}

/// Everything needed to build a ``VirtualMachine``.
public struct VirtualMachineConfiguration: Sendable {
    /// Number of vCPUs (1 … the host's KVM_CAP_MAX_VCPUS, at most 254).
    public var vcpuCount: Int
    /// Guest RAM in bytes; a multiple of 2 MiB.
    public var memorySize: UInt64
    /// virtio-blk disks, in PCI slot order (slot 1, 2, …).
    public var disks: [any DiskBackend]
    public var bootSource: BootSource
    /// Receives the serial console output.
    public var console: any ConsoleSink
    /// Marks guest RAM `MADV_MERGEABLE` so KSM can share identical pages between VMs.
    public var mergeableMemory: Bool
    /// Registers guest RAM with KVM dirty-page logging (for snapshots and migration).
    public var logDirtyPages: Bool
    /// Hides CPUID CMPXCHG16B (needed for Linux on the software `kvm_pvm` hypervisor). `nil`: auto-detect.
    public var hidesCMPXCHG16B: Bool?
    /// Called on the vCPU thread for every test-guest marker as it arrives (keep it short).
    public var markerObserver: (@Sendable (GuestMarker) -> Void)?
    /// Called on the vCPU thread for every tools heartbeat (count, monotonic ns); keep it short.
    public var heartbeatObserver: (@Sendable (UInt64, UInt64) -> Void)?
    /// virtio-net NICs, in PCI slot order after the disks.
    public var networkInterfaces: [NetworkInterfaceConfiguration]

    public init(vcpuCount: Int = 1, memorySize: UInt64 = 128 << 20, disks: [any DiskBackend] = [],
                bootSource: BootSource, console: any ConsoleSink = StandardOutputConsole(),
                mergeableMemory: Bool = false, logDirtyPages: Bool = false, hidesCMPXCHG16B: Bool? = nil,
                markerObserver: (@Sendable (GuestMarker) -> Void)? = nil,
                heartbeatObserver: (@Sendable (UInt64, UInt64) -> Void)? = nil,
                networkInterfaces: [NetworkInterfaceConfiguration] = []) {
        self.vcpuCount = vcpuCount
        self.memorySize = memorySize
        self.disks = disks
        self.bootSource = bootSource
        self.console = console
        self.mergeableMemory = mergeableMemory
        self.logDirtyPages = logDirtyPages
        self.hidesCMPXCHG16B = hidesCMPXCHG16B
        self.markerObserver = markerObserver
        self.heartbeatObserver = heartbeatObserver
        self.networkInterfaces = networkInterfaces
    }

    /// Most disks one VM may have (PCI slots 1–23 minus the host bridge; one IOAPIC pin each, 16–23 shared).
    public static let maximumDiskCount = 16
    /// Most NICs one VM may have (PCI slots after the disks).
    public static let maximumNetworkInterfaceCount = 8
    /// Smallest guest RAM accepted.
    public static let minimumMemorySize: UInt64 = 16 << 20
    /// Largest guest RAM accepted: what the boot page tables map, less the MMIO hole (63 GiB).
    public static let maximumMemorySize: UInt64 =
        LongModeSetup.maximumMappedBytes - (GuestMemory.highMemoryStart - GuestMemory.mmioHoleStart)
    /// Most vCPUs one VM may have (xAPIC IDs in the MP table); the host's KVM may allow fewer.
    public static let maximumVCPUCount = MPTable.maximumCPUCount
}
