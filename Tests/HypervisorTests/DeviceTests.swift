import Foundation
import Testing
@testable import Hypervisor

@Suite("16550 UART registers (no KVM needed)")
struct SerialTests {
    let console = CapturingConsole()
    let line = RecordingInterruptLine()
    var uart: Serial16550 { Serial16550(sink: console, interrupt: line) }

    @Test func transmitsLinesToTheSink() {
        let uart = self.uart
        for byte in Array("hello\nwor".utf8) { uart.write(offset: 0, size: 1, value: UInt32(byte)) }
        #expect(console.text == "hello\n")
        uart.flush()
        #expect(console.text == "hello\nwor")
        #expect(uart.read(offset: 5, size: 1) == 0x60)   // LSR: THR empty, transmitter empty
    }

    @Test func scratchDivisorAndFIFOIdentification() {
        let uart = self.uart
        uart.write(offset: 7, size: 1, value: 0xA5)
        #expect(uart.read(offset: 7, size: 1) == 0xA5)
        uart.write(offset: 3, size: 1, value: 0x83)          // DLAB on
        uart.write(offset: 0, size: 1, value: 0x01)
        uart.write(offset: 1, size: 1, value: 0x02)
        #expect(uart.read(offset: 0, size: 1) == 0x01)
        #expect(uart.read(offset: 1, size: 1) == 0x02)
        uart.write(offset: 3, size: 1, value: 0x03)          // DLAB off: offset 1 is IER again
        #expect(uart.read(offset: 1, size: 1) == 0x00)
        #expect(uart.read(offset: 2, size: 1) & 0xC0 == 0xC0) // FIFO enabled: a 16550A
        #expect(console.text.isEmpty)                        // divisor writes are not output
    }

    @Test func loopbackRoutesTransmitToReceiveAndModemControlToStatus() {
        let uart = self.uart
        uart.write(offset: 4, size: 1, value: 0x1F)          // loop | OUT2 | OUT1 | RTS | DTR
        #expect(uart.read(offset: 6, size: 1) == 0xF0)
        uart.write(offset: 0, size: 1, value: 0x42)
        #expect(uart.read(offset: 5, size: 1) & 0x01 == 0x01) // data ready
        #expect(uart.read(offset: 0, size: 1) == 0x42)
        #expect(console.text.isEmpty)
        uart.write(offset: 4, size: 1, value: 0x08)
        #expect(uart.read(offset: 6, size: 1) == 0xB0)
    }

    @Test func transmitterEmptyInterrupt() {
        let uart = self.uart
        #expect(uart.read(offset: 2, size: 1) & 0x0F == 0x01)  // nothing pending
        uart.write(offset: 1, size: 1, value: 0x02)            // enable THRE interrupt
        #expect(line.history == [true, false])                 // an edge on the ISA line
        #expect(uart.read(offset: 2, size: 1) & 0x0F == 0x02)  // THRE pending…
        #expect(uart.read(offset: 2, size: 1) & 0x0F == 0x01)  // …and acknowledged by the read
        uart.write(offset: 0, size: 1, value: 0x41)
        #expect(line.history.count == 4)
    }
}

@Suite("PCI configuration space and conf1 (no KVM needed)")
struct PCITests {
    @Test func barSizingAndAssignment() {
        var space = PCIConfigurationSpace(vendorID: 0x1AF4, deviceID: 0x1001, classCode: 0x018000,
                                          bars: [PCIBar(kind: .io, size: 0x100), nil, PCIBar(kind: .memory32, size: 0x1000)])
        space.write(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: 0x10, size: 4) == 0xFFFF_FF01)    // ~(0x100 - 1) | I/O bit
        space.write(offset: 0x18, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: 0x18, size: 4) == 0xFFFF_F000)
        space.write(offset: 0x14, size: 4, value: 0xFFFF_FFFF)       // unimplemented BAR stays 0
        #expect(space.read(offset: 0x14, size: 4) == 0)
        space.write(offset: 0x10, size: 4, value: 0xC123)
        #expect(space.barAddress(0) == 0xC100)
        #expect(space.ioOffset(of: 0xC110, inBar: 0) == nil)         // I/O decoding is off
        space.enable(command: 0x1)
        #expect(space.ioOffset(of: 0xC110, inBar: 0) == 0x10)
        #expect(space.ioOffset(of: 0xC200, inBar: 0) == nil)
    }

    @Test func identityIsReadOnlyAndCommandIsMasked() {
        var space = PCIConfigurationSpace(vendorID: 0x8086, deviceID: 0x0D57, classCode: 0x060000)
        space.write(offset: 0, size: 4, value: 0x1234_5678)
        #expect(space.read(offset: 0, size: 4) == 0x0D57_8086)
        #expect(space.read(offset: 0x08, size: 4) >> 8 == 0x060000)
        space.write(offset: 0x04, size: 2, value: 0xFFFF)
        #expect(space.command == 0x0547)
        #expect(space.read(offset: 0x03, size: 2) == 0xFFFF)          // crosses a dword: all ones
    }

    @Test func configurationMechanismOne() {
        let bus = PCIRootBus(devices: [0: PCIHostBridge()])
        bus.write(offset: 0, size: 4, value: 0x8000_0000)
        #expect(bus.read(offset: 0, size: 4) == 0x8000_0000)         // Linux's pci_check_type1
        #expect(bus.read(offset: 4, size: 4) == 0x0D57_8086)
        #expect(bus.read(offset: 6, size: 2) == 0x0D57)
        bus.write(offset: 0, size: 4, value: 0x8000_0800)             // slot 1: empty
        #expect(bus.read(offset: 4, size: 4) == 0xFFFF_FFFF)
        bus.write(offset: 0, size: 4, value: 0x0000_0000)             // enable bit clear
        #expect(bus.read(offset: 4, size: 2) == 0xFFFF)
        bus.write(offset: 0, size: 4, value: 0x8001_0000)             // bus 1 does not exist
        #expect(bus.read(offset: 4, size: 4) == 0xFFFF_FFFF)
    }
}

@Suite("Guest memory and raw disks (no KVM needed)")
struct MemoryAndDiskTests {
    @Test func boundsChecksResistOverflow() throws {
        let memory = try GuestMemory(size: 4 << 20)
        #expect(memory.hostPointer(at: 0, count: 4 << 20) != nil)
        #expect(memory.hostPointer(at: 1, count: 4 << 20) == nil)
        #expect(memory.hostPointer(at: UInt64.max, count: 2) == nil)
        #expect(memory.hostPointer(at: 4096, count: UInt64.max) == nil)
        try memory.store(UInt64(0x1122_3344_5566_7788), at: 0x3F_FFF8)
        #expect(try memory.load(UInt32.self, at: 0x3F_FFFC) == 0x1122_3344)
        #expect(throws: HypervisorError.self) { try memory.load(UInt64.self, at: 0x3F_FFFC) }
        #expect(throws: HypervisorError.self) { try GuestMemory(size: 1000) }
    }

    @Test func rawFileDiskReadsWritesFlushesAndPunchesHoles() throws {
        let directory = try TemporaryDirectory()
        let disk = try RawFileDiskBackend.createSparseFile(at: directory.path("disk.img"), byteCount: 1 << 20)
        #expect(disk.byteCount == 1 << 20)
        let data = [UInt8](repeating: 0x5A, count: 8192)
        try data.withUnsafeBytes { try disk.write($0, at: 4096) }
        try disk.flush()
        var back = [UInt8](repeating: 0, count: 8192)
        try back.withUnsafeMutableBytes { try disk.read(into: $0, at: 4096) }
        #expect(back == data)
        try disk.discard(offset: 4096, length: 4096)
        try back.withUnsafeMutableBytes { try disk.read(into: $0, at: 4096) }
        #expect(back[0..<4096].allSatisfy { $0 == 0 } && back[4096...].allSatisfy { $0 == 0x5A })
        #expect(throws: DiskError.self) { try back.withUnsafeMutableBytes { try disk.read(into: $0, at: (1 << 20) - 4096) } }
        #expect(throws: DiskError.self) { try disk.discard(offset: 1 << 20, length: 512) }
    }

    @Test func rawFileDiskRejectsEmptyAndOddSizedFiles() throws {
        let directory = try TemporaryDirectory()
        _ = FileManager.default.createFile(atPath: directory.path("empty.img"), contents: Data())
        _ = FileManager.default.createFile(atPath: directory.path("odd.img"), contents: Data(count: 1000))
        #expect { try RawFileDiskBackend(path: directory.path("empty.img")) } throws: { error in
            (error as? DiskError)?.message.contains("empty") == true
        }
        #expect { try RawFileDiskBackend(path: directory.path("odd.img")) } throws: { error in
            (error as? DiskError)?.message.contains("multiple of 512") == true
        }
        #expect(throws: DiskError.self) { try RawFileDiskBackend(path: directory.path("missing.img")) }
    }
}
