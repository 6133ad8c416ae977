internal import SystemSupport
/// The devices of a PC-like machine and the buses that reach them: COM1, i8042, CMOS, silent
/// legacy ports, the test-exit port, PCI conf1 with a host bridge, one virtio-blk per disk and one
/// virtio-net per NIC.
struct Platform {
    /// I/O port base of the first virtio-pci device's BAR0; each device gets 0x100 ports.
    static let pciIOBase: UInt16 = 0xC000
    /// First IOAPIC pin used for PCI INTx (pins 16–23, shared round-robin beyond eight devices).
    static let pciFirstInterruptPin = 16

    let serial: Serial16550
    let keyboard: I8042Controller
    let cmos: CMOSClock
    let pci: PCIRootBus
    let blockDevices: [VirtioPCILegacyDevice]
    /// One virtio-net device per NIC, in configuration order (slots after the disks).
    let networkDevices: [VirtioNet]
    /// The threads that run device requests.
    let io: WorkerPool
    /// INTx wiring of the PCI devices, for the MP table.
    let interruptRoutes: [PCIInterruptRoute]
    let dispatcher: ExitDispatcher

    init(configuration: VirtualMachineConfiguration, memory: GuestMemory, machine: KVMVirtualMachine,
         power: PowerControl, control: RunControl, epoch: MachineEpoch) throws(HypervisorError) {
        // Enough threads to keep several requests in flight per disk (a guest submits batches).
        let io: WorkerPool
        do { io = try WorkerPool(threads: min(32, 4 + 4 * configuration.disks.count), name: "vmm-io") } catch {
            throw .systemCall("pthread_create for the I/O threads", errno: error.errno)
        }
        self.io = io
        serial = Serial16550(sink: configuration.console,
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
                interruptLine: UInt8(pin), interrupt: KVMInterruptLine(machine: machine, gsi: UInt32(pin)), io: io)
            pciDevices[slot] = device
            blockDevices.append(device)
            routes.append(PCIInterruptRoute(slot: slot, pin: 1, ioapicPin: pin))
        }
        self.blockDevices = blockDevices
        var networkDevices: [VirtioNet] = []
        for (index, nic) in configuration.networkInterfaces.enumerated() {
            let position = configuration.disks.count + index
            let pin = Self.pciFirstInterruptPin + position % 8
            let model = try VirtioNet(index: index, configuration: nic, memory: memory)
            pciDevices[position + 1] = VirtioPCILegacyDevice(
                model: model, memory: memory, ioBase: Self.pciIOBase + UInt16(position) * UInt16(VirtioPCILegacyDevice.barSize),
                interruptLine: UInt8(pin), interrupt: KVMInterruptLine(machine: machine, gsi: UInt32(pin)), io: io)
            networkDevices.append(model)
            routes.append(PCIInterruptRoute(slot: position + 1, pin: 1, ioapicPin: pin))
        }
        self.networkDevices = networkDevices
        interruptRoutes = routes
        let pci = PCIRootBus(devices: pciDevices)
        let keyboard = I8042Controller(power: power)
        let cmos = CMOSClock()
        self.pci = pci
        self.keyboard = keyboard
        self.cmos = cmos
        let portBus = PortIOBus(mappings: [
            .init(range: Serial16550.com1Port...(Serial16550.com1Port + 7), device: serial),
            .init(range: PCIRootBus.configurationPort...(PCIRootBus.configurationPort + 7), device: pci),
            .init(range: 0x60...0x64, device: keyboard),
            .init(range: 0x70...0x71, device: cmos),
            .init(range: 0x80...0x80, device: SilentPorts()),
            .init(range: 0xED...0xED, device: SilentPorts()),
            .init(range: 0x92...0x92, device: SilentPorts(readValue: 0x02)),
            .init(range: TestGuestABI.exitPort...(TestGuestABI.exitPort + 3), device: TestExitPort(power: power)),
            .init(range: TestGuestABI.epochPort...(TestGuestABI.epochPort + 3), device: epoch),
        ], fallback: pci)
        dispatcher = ExitDispatcher(portBus: portBus, mmioBus: MMIOBus(mappings: []), power: power,
                                    markers: GuestMarkerPort(observer: configuration.markerObserver), control: control,
                                    heartbeat: GuestHeartbeatPort(observer: configuration.heartbeatObserver))
    }
}
