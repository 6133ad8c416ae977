internal import Synchronization
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// The test-exit port: a write powers the machine off with the written value as exit status.
final class TestExitPort: PortIODevice {
    private let power: PowerControl

    init(power: PowerControl) { self.power = power }

    func read(offset: UInt16, size: Int) -> UInt32 { 0 }

    func write(offset: UInt16, size: Int, value: UInt32) {
        power.requestPowerOff(.guestPoweredOff(status: value))
    }
}

/// The marker port: each 32-bit write is recorded with host timestamps (boot-time and
/// throughput measurements). The vCPU is known because each vCPU thread has its own bus view.
final class GuestMarkerPort: Sendable {
    private let markers = Mutex<[GuestMarker]>([])
    private let observer: (@Sendable (GuestMarker) -> Void)?
    /// At most this many markers are kept, so a looping guest cannot grow VMM memory.
    static let capacity = 4096

    init(observer: (@Sendable (GuestMarker) -> Void)? = nil) { self.observer = observer }

    func record(code: UInt32, vcpu: Int) {
        let marker = GuestMarker(code: code, vcpu: vcpu, monotonicNanoseconds: cvmfs_monotonic_ns(),
                                 realtimeNanoseconds: cvmfs_realtime_ns())
        markers.withLock { if $0.count < Self.capacity { $0.append(marker) } }
        observer?(marker)
    }

    var recorded: [GuestMarker] { markers.withLock { $0 } }
}

/// The tools channel's heartbeat port: counts the guest's heartbeats and tells the observer.
final class GuestHeartbeatPort: Sendable {
    private let state = Mutex<(count: UInt64, last: UInt64)>((0, 0))
    private let observer: (@Sendable (UInt64, UInt64) -> Void)?

    init(observer: (@Sendable (UInt64, UInt64) -> Void)?) { self.observer = observer }

    func beat() {
        let now = cvmfs_monotonic_ns()
        let count = state.withLock { s -> UInt64 in
            s.count &+= 1
            s.last = now
            return s.count
        }
        observer?(count, now)
    }

    /// Heartbeats so far and the monotonic time of the last one.
    var current: (count: UInt64, last: UInt64) { state.withLock { $0 } }
}

/// Ports a PC guest touches that need no behaviour: POST code 0x80, I/O delay 0xED, the fast-A20
/// gate 0x92 (reads 0x02: A20 on). Writes are swallowed; reads return a fixed value.
final class SilentPorts: PortIODevice {
    private let readValue: UInt32

    init(readValue: UInt32 = 0) { self.readValue = readValue }

    func read(offset: UInt16, size: Int) -> UInt32 { readValue }
    func write(offset: UInt16, size: Int, value: UInt32) {}
}

/// A minimal i8042 keyboard controller (ports 0x60 and 0x64): enough for Linux's probe to finish
/// quickly, and command 0xFE (pulse the CPU reset line) resets the machine (`reboot=k`).
///
/// Replies wait in an output queue of at most ``outputCapacity`` bytes (a real keyboard buffers
/// 16); replies to commands sent while it is full are dropped, so a guest that sends commands
/// without reading the answers cannot grow VMM memory.
final class I8042Controller: PortIODevice {
    struct State {
        var output: [UInt8] = []
        var commandByte: UInt8 = 0x61
        var pendingCommand: UInt8?

        mutating func reply(_ bytes: UInt8...) {
            for byte in bytes where output.count < I8042Controller.outputCapacity { output.append(byte) }
        }
    }

    /// Most reply bytes kept for the guest to read.
    static let outputCapacity = 16

    let state = Mutex(State())
    private let power: PowerControl

    init(power: PowerControl) { self.power = power }

    /// Reply bytes waiting to be read (tests).
    var pendingOutputCount: Int { state.withLock { $0.output.count } }

    /// Device range starts at 0x60; port 0x64 is offset 4.
    func read(offset: UInt16, size: Int) -> UInt32 {
        state.withLock { s -> UInt32 in
            switch offset {
            case 0:
                return s.output.isEmpty ? 0 : UInt32(s.output.removeFirst())
            case 4:
                // Bit 0 output full, bit 2 system flag; input buffer always empty.
                return (s.output.isEmpty ? 0 : 0x01) | 0x04
            default:
                return 0xFF
            }
        }
    }

    func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        var reset = false
        state.withLock { s in
            switch offset {
            case 4:
                switch byte {
                case 0x20: s.reply(s.commandByte)
                case 0x60, 0xD1, 0xD2, 0xD3, 0xD4: s.pendingCommand = byte
                case 0xAA: s.reply(0x55)  // controller self-test passed
                case 0xAB: s.reply(0x00)  // interface test passed
                case 0xFE: reset = true
                default: break
                }
            case 0:
                if let command = s.pendingCommand {
                    s.pendingCommand = nil
                    if command == 0x60 { s.commandByte = byte }
                    if command == 0xD1, byte & 0x01 == 0 { reset = true }
                } else if byte == 0xFF {
                    s.reply(0xFA, 0xAA)  // ACK, then the keyboard's self-test passed
                } else {
                    s.reply(0xFA)  // keyboard ACK for any keyboard command
                }
            default:
                break
            }
        }
        if reset { power.requestPowerOff(.reset) }
    }
}

/// A CMOS real-time clock (ports 0x70/0x71) that reports the host's UTC time in BCD, 24-hour mode.
final class CMOSClock: PortIODevice {
    struct State {
        var index: UInt8 = 0
        var storage = [UInt8](repeating: 0, count: 128)
    }

    let state = Mutex(State())

    static func bcd(_ value: Int32) -> UInt8 { UInt8((value / 10) << 4 | (value % 10)) }

    func read(offset: UInt16, size: Int) -> UInt32 {
        guard offset == 1 else { return 0xFF }
        let index = state.withLock { $0.index }
        var seconds = time_t(cvmfs_realtime_ns() / 1_000_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        switch index {
        case 0x00: return UInt32(Self.bcd(parts.tm_sec))
        case 0x02: return UInt32(Self.bcd(parts.tm_min))
        case 0x04: return UInt32(Self.bcd(parts.tm_hour))
        case 0x06: return UInt32(Self.bcd(parts.tm_wday + 1))
        case 0x07: return UInt32(Self.bcd(parts.tm_mday))
        case 0x08: return UInt32(Self.bcd(parts.tm_mon + 1))
        case 0x09: return UInt32(Self.bcd(parts.tm_year % 100))
        case 0x32: return UInt32(Self.bcd(19 + parts.tm_year / 100))
        case 0x0A: return 0x26  // divider 32.768 kHz, rate 1024 Hz, no update in progress
        case 0x0B: return 0x02  // 24-hour mode, BCD
        case 0x0C: return 0x00
        case 0x0D: return 0x80  // valid RAM and time
        default: return UInt32(state.withLock { $0.storage[Int(index)] })
        }
    }

    func write(offset: UInt16, size: Int, value: UInt32) {
        state.withLock { s in
            if offset == 0 {
                s.index = UInt8(truncatingIfNeeded: value) & 0x7F  // bit 7 is the NMI mask
            } else if offset == 1, s.index >= 0x0E {
                s.storage[Int(s.index)] = UInt8(truncatingIfNeeded: value)
            }
        }
    }
}

/// The machine's restore count as the test guest reads it (``TestGuestABI/epochPort``).
final class MachineEpoch: PortIODevice {
    private let value = Atomic<UInt32>(0)

    var count: UInt32 {
        get { value.load(ordering: .acquiring) }
        set { value.store(newValue, ordering: .releasing) }
    }

    func read(offset: UInt16, size: Int) -> UInt32 { offset == 0 ? count : 0 }
    func write(offset: UInt16, size: Int, value: UInt32) {}
}
