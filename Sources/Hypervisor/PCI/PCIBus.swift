internal import Synchronization

/// One PCI function attached to the root bus.
protocol PCIFunction: AnyObject, Sendable {
    func readConfiguration(offset: Int, size: Int) -> UInt32
    func writeConfiguration(offset: Int, size: Int, value: UInt32)
    /// Port I/O into one of the function's I/O BARs, or `nil` when no BAR decodes `port`.
    func readIO(port: UInt16, size: Int) -> UInt32?
    /// True when one of the function's I/O BARs decoded the write.
    func writeIO(port: UInt16, size: Int, value: UInt32) -> Bool
}

/// PCI bus 0 with configuration mechanism #1 (address latch at 0xCF8, data at 0xCFC–0xCFF).
/// Only function 0 of each device exists; absent functions read as all ones.
final class PCIRootBus: PortIODevice, PortIOFallback {
    /// First port of the mechanism #1 range (0xCF8…0xCFF).
    static let configurationPort: UInt16 = 0xCF8
    static let slotCount = 32

    let address = Mutex<UInt32>(0)
    private let devices: [Int: any PCIFunction]

    /// - Parameter devices: Functions by device number (slot) 0…31.
    init(devices: [Int: any PCIFunction]) {
        self.devices = devices
    }

    private func target(_ latch: UInt32) -> (any PCIFunction, Int)? {
        guard latch & 0x8000_0000 != 0 else { return nil }
        let bus = (latch >> 16) & 0xFF
        let slot = Int((latch >> 11) & 0x1F)
        let function = (latch >> 8) & 0x7
        guard bus == 0, function == 0, let device = devices[slot] else { return nil }
        return (device, Int(latch & 0xFC))
    }

    func read(offset: UInt16, size: Int) -> UInt32 {
        let latch = address.withLock { $0 }
        if offset < 4 {
            // Reads of the latch return it (Linux's pci_check_type1 relies on this).
            return latch >> (UInt32(offset) * 8)
        }
        guard let (device, register) = target(latch) else { return allOnes(size: size) }
        let byte = Int(offset - 4)
        guard byte + size <= 4 else { return allOnes(size: size) }
        return device.readConfiguration(offset: register + byte, size: size)
    }

    func write(offset: UInt16, size: Int, value: UInt32) {
        if offset < 4 {
            address.withLock { latch in
                let shift = UInt32(offset) * 8
                let mask: UInt32 = (size >= 4 ? UInt32.max : (UInt32(1) << (UInt32(size) * 8)) - 1) << shift
                latch = (latch & ~mask) | ((value << shift) & mask)
            }
            return
        }
        let latch = address.withLock { $0 }
        guard let (device, register) = target(latch) else { return }
        let byte = Int(offset - 4)
        guard byte + size <= 4 else { return }
        device.writeConfiguration(offset: register + byte, size: size, value: value)
    }

    // MARK: BAR decoding

    func read(port: UInt16, size: Int) -> UInt32? {
        for device in devices.values {
            if let value = device.readIO(port: port, size: size) { return value }
        }
        return nil
    }

    func write(port: UInt16, size: Int, value: UInt32) -> Bool {
        devices.values.contains { $0.writeIO(port: port, size: size, value: value) }
    }
}

/// The host bridge at 00:00.0 that Linux's `pci_sanity_check` looks for.
final class PCIHostBridge: PCIFunction {
    private let space = PCIConfigurationSpace(vendorID: 0x8086, deviceID: 0x0d57, classCode: 0x060000)

    func readConfiguration(offset: Int, size: Int) -> UInt32 { space.read(offset: offset, size: size) }
    func writeConfiguration(offset: Int, size: Int, value: UInt32) {}
    func readIO(port: UInt16, size: Int) -> UInt32? { nil }
    func writeIO(port: UInt16, size: Int, value: UInt32) -> Bool { false }
}
