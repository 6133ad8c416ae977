/// A base address register's kind and size.
public struct PCIBar: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// An I/O-space BAR (bit 0 set).
        case io
        /// A 32-bit memory-space BAR.
        case memory32
    }

    public var kind: Kind
    /// Size in bytes; a power of two (at least 4 for I/O, 16 for memory).
    public var size: UInt32

    public init(kind: Kind, size: UInt32) {
        self.kind = kind
        self.size = size
    }
}

/// The 256-byte type-0 configuration header of one PCI function, with the write rules of real
/// hardware: read-only identity fields, writable command bits, and BAR sizing (writing all ones
/// to a BAR reads back `~(size - 1)` with the type bits).
///
/// A value type without side effects, so it can be tested without KVM.
public struct PCIConfigurationSpace: Sendable, Equatable {
    public static let size = 256

    /// Command register bits the guest may change: I/O, memory, bus master, parity, SERR, INTx disable.
    static let writableCommandBits: UInt16 = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | 0x0400

    public private(set) var bytes: [UInt8]
    /// BAR definitions by index (0...5); `nil` for unimplemented BARs.
    public let bars: [PCIBar?]

    /// Creates a header.
    ///
    /// - Parameters:
    ///   - classCode: 24-bit class, subclass, programming interface (e.g. 0x018000).
    ///   - interruptPin: 0 none, 1 INTA … 4 INTD.
    ///   - interruptLine: The IRQ/GSI the pin is wired to (informational for the guest).
    public init(vendorID: UInt16, deviceID: UInt16, revision: UInt8 = 0, classCode: UInt32,
                subsystemVendorID: UInt16 = 0, subsystemID: UInt16 = 0, headerType: UInt8 = 0,
                bars: [PCIBar?] = [], interruptPin: UInt8 = 0, interruptLine: UInt8 = 0) {
        bytes = [UInt8](repeating: 0, count: Self.size)
        var padded = bars
        while padded.count < 6 { padded.append(nil) }
        self.bars = Array(padded.prefix(6))
        put16(vendorID, at: 0x00)
        put16(deviceID, at: 0x02)
        bytes[0x08] = revision
        bytes[0x09] = UInt8(truncatingIfNeeded: classCode)
        bytes[0x0A] = UInt8(truncatingIfNeeded: classCode >> 8)
        bytes[0x0B] = UInt8(truncatingIfNeeded: classCode >> 16)
        bytes[0x0E] = headerType
        put16(subsystemVendorID, at: 0x2C)
        put16(subsystemID, at: 0x2E)
        bytes[0x3C] = interruptLine
        bytes[0x3D] = interruptPin
        for (index, bar) in self.bars.enumerated() {
            guard let bar else { continue }
            put32(bar.kind == .io ? 0x1 : 0x0, at: 0x10 + index * 4)
        }
    }

    private mutating func put16(_ value: UInt16, at offset: Int) {
        bytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    private mutating func put32(_ value: UInt32, at offset: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    private func get32(at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    /// Reads `size` (1, 2 or 4) bytes at `offset`; accesses that cross a dword read as all ones.
    public func read(offset: Int, size: Int) -> UInt32 {
        guard offset >= 0, [1, 2, 4].contains(size), offset + size <= Self.size,
              offset / 4 == (offset + size - 1) / 4 else { return allOnes(size: size) }
        return (0..<size).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    /// Writes `size` bytes at `offset`, honouring which bits are writable.
    public mutating func write(offset: Int, size: Int, value: UInt32) {
        guard offset >= 0, [1, 2, 4].contains(size), offset + size <= Self.size,
              offset / 4 == (offset + size - 1) / 4 else { return }
        let dwordOffset = offset & ~3
        switch dwordOffset {
        case 0x04:
            // Command (low half) is partly writable; status bits are write-one-to-clear (none set here).
            guard offset < 0x06 else { return }
            var merged = get32(at: 0x04)
            merge(&merged, offset: offset - 0x04, size: size, value: value)
            let command = (UInt16(truncatingIfNeeded: merged) & Self.writableCommandBits)
                | (UInt16(bytes[0x04]) | UInt16(bytes[0x05]) << 8) & ~Self.writableCommandBits
            put16(command, at: 0x04)
        case 0x0C:
            if offset == 0x0C, size == 1 { bytes[0x0C] = UInt8(truncatingIfNeeded: value) }  // cache line size
        case 0x10...0x24:
            let index = (dwordOffset - 0x10) / 4
            guard let bar = bars[index] else { return }
            var merged = get32(at: dwordOffset)
            merge(&merged, offset: offset - dwordOffset, size: size, value: value)
            let typeBits: UInt32 = bar.kind == .io ? 0x1 : 0x0
            let addressMask: UInt32 = ~(bar.size - 1) & (bar.kind == .io ? ~UInt32(0x3) : ~UInt32(0xF))
            put32((merged & addressMask) | typeBits, at: dwordOffset)
        case 0x3C:
            if offset == 0x3C { bytes[0x3C] = UInt8(truncatingIfNeeded: value) }  // interrupt line
        default:
            break  // identity, expansion ROM, capabilities: read-only
        }
    }

    private func merge(_ dword: inout UInt32, offset: Int, size: Int, value: UInt32) {
        let shift = UInt32(offset * 8)
        let mask: UInt32 = (size == 4 ? UInt32.max : (UInt32(1) << (UInt32(size) * 8)) - 1) << shift
        dword = (dword & ~mask) | ((value << shift) & mask)
    }

    /// The command register.
    public var command: UInt16 { UInt16(bytes[0x04]) | UInt16(bytes[0x05]) << 8 }

    /// The address programmed into BAR `index` (type bits removed).
    public func barAddress(_ index: Int) -> UInt32? {
        guard index >= 0, index < 6, let bar = bars[index] else { return nil }
        return get32(at: 0x10 + index * 4) & (bar.kind == .io ? ~UInt32(0x3) : ~UInt32(0xF))
    }

    /// Sets a BAR's address as firmware would before the guest boots.
    public mutating func assignBar(_ index: Int, address: UInt32) {
        write(offset: 0x10 + index * 4, size: 4, value: address)
    }

    /// Sets command bits as firmware would (for example I/O space enable).
    public mutating func enable(command bits: UInt16) {
        put16(command | (bits & Self.writableCommandBits), at: 0x04)
    }

    /// If BAR `index` is an enabled I/O BAR decoding `port`, the offset of `port` inside it.
    public func ioOffset(of port: UInt16, inBar index: Int) -> UInt16? {
        guard command & 0x1 != 0, let bar = bars[index], bar.kind == .io,
              let base = barAddress(index), base != 0 else { return nil }
        let offset = UInt32(port) &- base
        return UInt32(port) >= base && offset < bar.size ? UInt16(offset) : nil
    }
}
