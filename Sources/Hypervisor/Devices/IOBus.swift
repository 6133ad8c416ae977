/// A device that answers guest port I/O (`in`/`out`) in a range of ports.
///
/// Calls arrive on vCPU threads, possibly several at once: implementations synchronize their state.
protocol PortIODevice: AnyObject, Sendable {
    /// Reads `size` (1, 2 or 4) bytes at `offset` from the start of the device's range.
    func read(offset: UInt16, size: Int) -> UInt32
    /// Writes the low `size` bytes of `value` at `offset` from the start of the device's range.
    func write(offset: UInt16, size: Int, value: UInt32)
}

/// A device that answers guest accesses to guest-physical addresses not backed by RAM.
protocol MMIODevice: AnyObject, Sendable {
    func read(offset: UInt64, size: Int) -> UInt64
    func write(offset: UInt64, size: Int, value: UInt64)
}

/// The value an unclaimed read returns: all ones of the access size.
func allOnes(size: Int) -> UInt32 {
    size >= 4 ? UInt32.max : (UInt32(1) << (UInt32(size) * 8)) - 1
}

/// Routes port I/O to devices by port range. The table is fixed when the machine is built; ports
/// nobody claims go to `fallback` (the PCI bus, whose BARs the guest may move), then read as all ones.
final class PortIOBus: Sendable {
    struct Mapping: Sendable {
        let range: ClosedRange<UInt16>
        let device: any PortIODevice
    }

    private let mappings: [Mapping]
    private let fallback: (any PortIOFallback)?

    init(mappings: [Mapping], fallback: (any PortIOFallback)?) {
        self.mappings = mappings.sorted { $0.range.lowerBound < $1.range.lowerBound }
        self.fallback = fallback
    }

    func read(port: UInt16, size: Int) -> UInt32 {
        if let mapping = mappings.first(where: { $0.range.contains(port) }) {
            return mapping.device.read(offset: port - mapping.range.lowerBound, size: size) & allOnes(size: size)
        }
        if let value = fallback?.read(port: port, size: size) { return value & allOnes(size: size) }
        return allOnes(size: size)
    }

    func write(port: UInt16, size: Int, value: UInt32) {
        let masked = value & allOnes(size: size)
        if let mapping = mappings.first(where: { $0.range.contains(port) }) {
            mapping.device.write(offset: port - mapping.range.lowerBound, size: size, value: masked)
            return
        }
        _ = fallback?.write(port: port, size: size, value: masked)
    }

    /// Ranges claimed by two devices (a construction bug), for validation.
    var overlappingRanges: [(ClosedRange<UInt16>, ClosedRange<UInt16>)] {
        zip(mappings, mappings.dropFirst()).compactMap { a, b in
            a.range.overlaps(b.range) ? (a.range, b.range) : nil
        }
    }
}

/// A second-chance handler for port I/O no fixed device claims (PCI BARs).
protocol PortIOFallback: Sendable {
    /// The value read, or `nil` when no device decodes the port.
    func read(port: UInt16, size: Int) -> UInt32?
    /// True when a device decoded the write.
    func write(port: UInt16, size: Int, value: UInt32) -> Bool
}

/// Routes MMIO exits to devices by guest-physical range; unclaimed reads return all ones and
/// unclaimed writes are ignored.
final class MMIOBus: Sendable {
    struct Mapping: Sendable {
        let start: UInt64
        let size: UInt64
        let device: any MMIODevice
    }

    private let mappings: [Mapping]

    init(mappings: [Mapping]) { self.mappings = mappings }

    private func mapping(for address: UInt64) -> Mapping? {
        mappings.first { address >= $0.start && address - $0.start < $0.size }
    }

    func read(address: UInt64, size: Int) -> UInt64 {
        guard let mapping = mapping(for: address) else { return size >= 8 ? .max : (1 << (UInt64(size) * 8)) - 1 }
        return mapping.device.read(offset: address - mapping.start, size: size)
    }

    func write(address: UInt64, size: Int, value: UInt64) {
        guard let mapping = mapping(for: address) else { return }
        mapping.device.write(offset: address - mapping.start, size: size, value: value)
    }
}
