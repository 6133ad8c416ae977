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
