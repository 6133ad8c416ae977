/// A virtio device behind a transport: its type, features, configuration space and request handling.
///
/// The transport serializes all calls to one device.
protocol VirtioDeviceModel: AnyObject, Sendable {
    /// The virtio device type (2 = block).
    var deviceType: UInt16 { get }
    /// Transitional PCI device ID (0x1000 + …, e.g. 0x1001 for block).
    var transitionalPCIDeviceID: UInt16 { get }
    /// PCI class code (e.g. 0x018000 mass storage / other).
    var pciClassCode: UInt32 { get }
    /// Feature bits 0–31 the device offers.
    var offeredFeatures: UInt32 { get }
    /// The size of each queue.
    var queueSizes: [UInt16] { get }
    /// The device-specific configuration space.
    var configurationBytes: [UInt8] { get }

    /// Handles one request chain; returns the number of bytes written into guest memory.
    func handle(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, negotiatedFeatures: UInt32) -> UInt32
    /// Handles a chain whose structure was invalid; returns the bytes written (normally 0).
    func handleMalformed(head: UInt16, violation: VirtqueueViolation, queue: Int) -> UInt32

    // Devices that serve their own queues (defaults below do nothing). Requirements, so that the
    // transport's calls reach a device's own implementations.
    func servesQueueItself(_ index: Int) -> Bool
    func queueNotified(_ index: Int)
    func attach(_ transport: any VirtioQueueTransport)
    func driverStatusChanged(_ status: UInt8, negotiatedFeatures features: UInt32)
    func quiesce()
    func writeConfiguration(offset: Int, bytes: [UInt8])
}

/// Virtio device status bits.
enum VirtioStatus {
    static let acknowledge: UInt8 = 1
    static let driver: UInt8 = 2
    static let driverOK: UInt8 = 4
    static let featuresOK: UInt8 = 8
    static let needsReset: UInt8 = 0x40
    static let failed: UInt8 = 0x80
}

/// How a device that serves its own queues reaches them (``VirtioDeviceModel/servesQueueItself(_:)``):
/// the transport keeps the rings; the device takes chains and returns them from its own threads.
protocol VirtioQueueTransport: AnyObject, Sendable {
    /// Takes up to `limit` chains the driver made available on queue `queue`; empty while the
    /// driver is not ready (DRIVER_OK clear, NEEDS_RESET set) or the queue has no ring. A ring
    /// violation sets NEEDS_RESET; the chains taken before it are returned.
    func takeAvailable(queue: Int, limit: Int) -> [AvailableChain]
    /// Returns chains to the driver (head, bytes written into each) and interrupts it unless it
    /// asked not to be.
    func complete(queue: Int, _ used: [(head: UInt16, written: UInt32)])
    /// Tells the driver the configuration space changed (ISR bit 1 and the interrupt line).
    func signalConfigurationChange()
}

extension VirtioDeviceModel {
    /// Whether the device takes queue `index`'s chains itself instead of the transport handing
    /// each to the I/O threads. Default: no.
    func servesQueueItself(_ index: Int) -> Bool { false }
    /// The driver notified a queue the device serves itself (on the vCPU: must not block).
    func queueNotified(_ index: Int) {}
    /// The transport the device serves its own queues through (given once, before the guest runs).
    func attach(_ transport: any VirtioQueueTransport) {}
    /// The driver wrote the status register (`status` 0 is a reset, after ``quiesce()``);
    /// `features` are the ones negotiated.
    func driverStatusChanged(_ status: UInt8, negotiatedFeatures features: UInt32) {}
    /// Before a reset: the device stops touching its rings and guest memory before it returns.
    func quiesce() {}
    /// The driver wrote `bytes` at `offset` of the device configuration space. Default: ignored.
    func writeConfiguration(offset: Int, bytes: [UInt8]) {}
    /// Not used by devices that serve every queue themselves.
    func handle(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, negotiatedFeatures: UInt32) -> UInt32 { 0 }
    func handleMalformed(head: UInt16, violation: VirtqueueViolation, queue: Int) -> UInt32 { 0 }
}
