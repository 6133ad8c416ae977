/// A PCI function's INTx routing, described in the MP table.
struct PCIInterruptRoute: Sendable, Equatable {
    var slot: Int
    /// 1 = INTA … 4 = INTD.
    var pin: Int
    /// The IOAPIC input (GSI) the pin drives.
    var ioapicPin: Int
}

/// Builds an Intel MultiProcessor Specification 1.4 table: one enabled processor entry per vCPU,
/// an ISA and a PCI bus, the IOAPIC, ISA IRQs 0–15 to IOAPIC pins 0–15, PCI INTx
/// (`srcbusirq = slot << 2 | pin - 1`) to pins 16–23 level-triggered, and LINT0/LINT1 (ExtINT/NMI).
enum MPTable {
    static let ioapicAddress: UInt32 = 0xFEC0_0000
    static let localAPICAddress: UInt32 = 0xFEE0_0000
    static let apicVersion: UInt8 = 0x14
    /// xAPIC IDs are 8 bits and one is taken by the IOAPIC.
    static let maximumCPUCount = 254
    static let pciBusID: UInt8 = 0
    static let isaBusID: UInt8 = 1
    static let oemIdentifier = "SWIFTVMM"

    /// The IOAPIC's APIC ID (after all processors).
    static func ioapicID(cpuCount: Int) -> UInt8 { UInt8(cpuCount + 1) }

    /// The floating pointer followed by the configuration table, for placement at `address`.
    static func build(cpuCount: Int, pciRoutes: [PCIInterruptRoute], at address: UInt32) throws(HypervisorError) -> [UInt8] {
        guard (1...maximumCPUCount).contains(cpuCount) else {
            throw HypervisorError(.resourceLimit, "MP table: \(cpuCount) vCPUs, supported 1...\(maximumCPUCount)")
        }
        var entries: [[UInt8]] = []
        var count = 0
        for cpu in 0..<cpuCount {
            var e = ByteWriter(count: 20)
            e.put(UInt8(0), at: 0)                          // MP_PROCESSOR
            e.put(UInt8(cpu), at: 1)                        // APIC ID
            e.put(apicVersion, at: 2)
            e.put(UInt8(cpu == 0 ? 0x03 : 0x01), at: 3)     // enabled | BSP
            e.put(UInt32(0x600), at: 4)                     // CPU signature
            e.put(UInt32(0x201), at: 8)                     // features: FPU | APIC
            entries.append(e.bytes)
        }
        for (id, type) in [(pciBusID, "PCI   "), (isaBusID, "ISA   ")] {
            var e = ByteWriter(count: 8)
            e.put(UInt8(1), at: 0)                          // MP_BUS
            e.put(id, at: 1)
            e.put(Array(type.utf8), at: 2)
            entries.append(e.bytes)
        }
        let ioapic = ioapicID(cpuCount: cpuCount)
        var ioapicEntry = ByteWriter(count: 8)
        ioapicEntry.put(UInt8(2), at: 0)                    // MP_IOAPIC
        ioapicEntry.put(ioapic, at: 1)
        ioapicEntry.put(apicVersion, at: 2)
        ioapicEntry.put(UInt8(1), at: 3)                    // usable
        ioapicEntry.put(ioapicAddress, at: 4)
        entries.append(ioapicEntry.bytes)
        func interruptSource(type: UInt8, flags: UInt16, bus: UInt8, busIRQ: UInt8, destinationAPIC: UInt8, pin: UInt8) -> [UInt8] {
            var e = ByteWriter(count: 8)
            e.put(type == 4 ? UInt8(4) : UInt8(3), at: 0)   // MP_LINTSRC or MP_INTSRC
            e.put(type == 4 ? UInt8(pin == 0 ? 3 : 1) : UInt8(0), at: 1)  // ExtINT/NMI or INT
            e.put(flags, at: 2)
            e.put(bus, at: 4)
            e.put(busIRQ, at: 5)
            e.put(destinationAPIC, at: 6)
            e.put(pin, at: 7)
            return e.bytes
        }
        for irq in 0..<16 {
            entries.append(interruptSource(type: 3, flags: 0, bus: isaBusID, busIRQ: UInt8(irq),
                                           destinationAPIC: ioapic, pin: UInt8(irq)))
        }
        for route in pciRoutes {
            // Level-triggered, active-low (the PCI convention; KVM ignores the polarity).
            entries.append(interruptSource(type: 3, flags: 0x0F, bus: pciBusID,
                                           busIRQ: UInt8(route.slot << 2 | (route.pin - 1)),
                                           destinationAPIC: ioapic, pin: UInt8(route.ioapicPin)))
        }
        entries.append(interruptSource(type: 4, flags: 0, bus: isaBusID, busIRQ: 0, destinationAPIC: 0, pin: 0))
        entries.append(interruptSource(type: 4, flags: 0, bus: isaBusID, busIRQ: 0, destinationAPIC: 0xFF, pin: 1))
        count = entries.count

        let body = entries.flatMap { $0 }
        var header = ByteWriter(count: 44)
        header.put(Array("PCMP".utf8), at: 0)
        header.put(UInt16(44 + body.count), at: 4)
        header.put(UInt8(4), at: 6)                         // spec revision 1.4
        header.put(Array(oemIdentifier.utf8), at: 8)
        header.put(Array("SWIFT HV    ".utf8), at: 16)
        header.put(UInt16(count), at: 34)
        header.put(localAPICAddress, at: 36)
        var table = header.bytes + body
        table[7] = checksumByte(table)

        var floating = ByteWriter(count: 16)
        floating.put(Array("_MP_".utf8), at: 0)
        floating.put(address + 16, at: 4)                   // physptr: the table follows
        floating.put(UInt8(1), at: 8)                       // length in 16-byte units
        floating.put(UInt8(4), at: 9)                       // spec revision
        var pointer = floating.bytes
        pointer[10] = checksumByte(pointer)
        return pointer + table
    }
}
