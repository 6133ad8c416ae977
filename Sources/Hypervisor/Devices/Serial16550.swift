internal import Synchronization

/// A 16550A UART (COM1 at 0x3f8, IRQ 4) that sends what the guest transmits to a ``ConsoleSink``.
///
/// Implements what Linux's 8250 driver probes: the scratch register, DLAB divisor latches,
/// FIFO identification (IIR bits 7:6), loopback (MCR bit 4 routes TX to RX and MCR to MSR), and
/// the transmitter-empty interrupt, raised as an edge on its interrupt line.
final class Serial16550: PortIODevice {
    /// Standard base port of COM1.
    static let com1Port: UInt16 = 0x3f8
    /// ISA IRQ of COM1.
    static let com1Interrupt: UInt32 = 4
    /// Output is handed to the sink at each newline or when this many bytes are pending.
    static let outputChunk = 512

    struct Registers {
        var interruptEnable: UInt8 = 0
        var lineControl: UInt8 = 0x03
        var modemControl: UInt8 = 0x08  // OUT2
        var scratch: UInt8 = 0
        var divisorLow: UInt8 = 0x0c
        var divisorHigh: UInt8 = 0
        var fifoControl: UInt8 = 0
        var transmitInterruptPending = false
        var receive: [UInt8] = []
        var output: [UInt8] = []
    }

    let registers = Mutex(Registers())
    private let sink: any ConsoleSink
    private let interrupt: any InterruptLine

    init(sink: any ConsoleSink, interrupt: any InterruptLine) {
        self.sink = sink
        self.interrupt = interrupt
    }

    private static let dlab: UInt8 = 0x80
    private static let loopback: UInt8 = 0x10
    private static let transmitterInterrupt: UInt8 = 0x02
    private static let receiverInterrupt: UInt8 = 0x01

    func read(offset: UInt16, size: Int) -> UInt32 {
        let value = registers.withLock { r -> UInt8 in
            let dlab = r.lineControl & Self.dlab != 0
            switch offset {
            case 0:
                if dlab { return r.divisorLow }
                return r.receive.isEmpty ? 0 : r.receive.removeFirst()
            case 1:
                return dlab ? r.divisorHigh : r.interruptEnable
            case 2:
                let fifoBits: UInt8 = 0xC0
                if r.interruptEnable & Self.receiverInterrupt != 0, !r.receive.isEmpty {
                    return fifoBits | 0x04
                }
                if r.interruptEnable & Self.transmitterInterrupt != 0, r.transmitInterruptPending {
                    r.transmitInterruptPending = false  // reading IIR acknowledges THRE
                    return fifoBits | 0x02
                }
                return fifoBits | 0x01
            case 3:
                return r.lineControl
            case 4:
                return r.modemControl
            case 5:
                // THR empty and transmitter empty: output is never delayed.
                return 0x60 | (r.receive.isEmpty ? 0 : 0x01)
            case 6:
                if r.modemControl & Self.loopback != 0 {
                    let m = r.modemControl
                    let cts: UInt8 = m & 0x02 != 0 ? 0x10 : 0
                    let dsr: UInt8 = m & 0x01 != 0 ? 0x20 : 0
                    let ri: UInt8 = m & 0x04 != 0 ? 0x40 : 0
                    let dcd: UInt8 = m & 0x08 != 0 ? 0x80 : 0
                    return cts | dsr | ri | dcd
                }
                return 0xB0  // DCD, DSR, CTS
            case 7:
                return r.scratch
            default:
                return 0xFF
            }
        }
        return UInt32(value)
    }

    func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        let (flushed, raise) = registers.withLock { r -> ([UInt8]?, Bool) in
            let dlab = r.lineControl & Self.dlab != 0
            switch offset {
            case 0:
                if dlab {
                    r.divisorLow = byte
                    return (nil, false)
                }
                if r.modemControl & Self.loopback != 0 {
                    if r.receive.count < 64 { r.receive.append(byte) }
                } else {
                    r.output.append(byte)
                }
                r.transmitInterruptPending = true
                let raise = r.interruptEnable & Self.transmitterInterrupt != 0
                if byte == 0x0A || r.output.count >= Self.outputChunk {
                    defer { r.output.removeAll(keepingCapacity: true) }
                    return (r.output, raise)
                }
                return (nil, raise)
            case 1:
                if dlab {
                    r.divisorHigh = byte
                    return (nil, false)
                }
                let enabledTransmit = r.interruptEnable & Self.transmitterInterrupt == 0
                    && byte & Self.transmitterInterrupt != 0
                r.interruptEnable = byte & 0x0F
                if enabledTransmit { r.transmitInterruptPending = true }
                return (nil, enabledTransmit)
            case 2:
                r.fifoControl = byte
                if byte & 0x02 != 0 { r.receive.removeAll() }
            case 3:
                r.lineControl = byte
            case 4:
                r.modemControl = byte & 0x1F
            case 7:
                r.scratch = byte
            default:
                break
            }
            return (nil, false)
        }
        if let flushed, !flushed.isEmpty { sink.write(flushed) }
        if raise { interrupt.pulse() }
    }

    /// Most bytes of host input (the console typed into) waiting for the guest to read them.
    static let inputCapacity = 4096

    /// Queues bytes typed on the console for the guest to read (RBR), raising the receive
    /// interrupt when the guest enabled it. Bytes beyond ``inputCapacity`` are dropped.
    /// - Returns: How many bytes were queued.
    @discardableResult
    func receive(_ bytes: [UInt8]) -> Int {
        let (queued, raise) = registers.withLock { r -> (Int, Bool) in
            let room = max(0, Self.inputCapacity - r.receive.count)
            let accepted = bytes.prefix(room)
            r.receive.append(contentsOf: accepted)
            return (accepted.count, !accepted.isEmpty && r.interruptEnable & Self.receiverInterrupt != 0)
        }
        if raise { interrupt.pulse() }
        return queued
    }

    /// Hands any pending partial line to the sink and flushes it.
    func flush() {
        let pending = registers.withLock { r -> [UInt8] in
            defer { r.output.removeAll() }
            return r.output
        }
        if !pending.isEmpty { sink.write(pending) }
        sink.flush()
    }
}
