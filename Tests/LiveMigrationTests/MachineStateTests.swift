import Foundation
import Hypervisor
import LiveMigration
import Testing

@Suite("Machine state: the format and save/restore")
struct MachineStateTests {
    /// A state with every section filled with recognisable bytes.
    static func sampleState(vcpus: Int = 2, disks: Int = 1) -> MachineState {
        func bytes(_ count: Int, _ seed: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }
        let vcpuStates = (0..<vcpus).map { index in
            VCPUState(cpuid: [CPUIDLeaf(function: 1, index: 0, flags: 0, eax: 0x11, ebx: 0x22, ecx: 0x33, edx: UInt32(index))],
                      mpState: 0, registers: bytes(144, index), specialRegisters: bytes(312, index + 1), fpu: bytes(416, 2),
                      xsave: bytes(4096, 3), xcrs: bytes(392, 4), debugRegisters: bytes(128, 5), localAPIC: bytes(1024, 6),
                      msrs: [MSRValue(index: 0x10, value: 123_456), MSRValue(index: 0xC000_0080, value: 0xD01)], events: bytes(64, 7))
        }
        return MachineState(
            vcpuCount: vcpus, memorySize: 64 << 20, diskCount: disks, tscKilohertz: 2_600_000, restoreCount: 3,
            savedWallNanoseconds: 1_700_000_000_000_000_000, vcpus: vcpuStates,
            interrupts: InterruptControllerState(chips: [bytes(520, 8), bytes(520, 9), bytes(520, 10)], timer: bytes(112, 11), clock: bytes(48, 12)),
            serial: SerialState(interruptEnable: 2, lineControl: 3, modemControl: 8, scratch: 0x55, divisorLow: 12, divisorHigh: 0,
                                fifoControl: 0xC7, transmitInterruptPending: true, receive: Array("input".utf8), pendingOutput: Array("half a li".utf8)),
            keyboard: KeyboardControllerState(commandByte: 0x61, pendingCommand: 0x60, output: [0xFA]),
            cmos: CMOSState(index: 0x0E, storage: bytes(128, 13)), pciAddressLatch: 0x8000_0810,
            virtioDevices: (0..<disks).map { _ in
                VirtioDeviceState(deviceType: 2, configurationSpace: bytes(256, 14), guestFeatures: 0x204, queueSelect: 0, status: 7, isr: 1,
                                  queues: [VirtioDeviceState.Queue(pfn: 0x1234, lastAvailableIndex: 65_530, usedIndex: 65_531)])
            })
    }

    @Test func aStateRoundTripsThroughItsEncoding() throws {
        let state = Self.sampleState()
        let decoded = try MachineStateCodec.decode(MachineStateCodec.encode(state))
        #expect(decoded == state)
    }

    /// Every single-byte corruption is refused with an error naming what is wrong (never a trap,
    /// never a different state).
    @Test func corruptionIsRefusedWithAnErrorNamingTheSection() throws {
        let encoded = MachineStateCodec.encode(Self.sampleState(vcpus: 1))
        var refused = 0
        for offset in stride(from: 0, to: encoded.count, by: 7) {
            var damaged = encoded
            damaged[offset] ^= 0x5A
            do {
                _ = try MachineStateCodec.decode(damaged)
                Issue.record("a state damaged at byte \(offset) decoded")
            } catch {
                refused += 1
                #expect(error.code == .invalidSavedState || error.code == .incompatibleState, "\(error)")
            }
        }
        #expect(refused > 100)
        // Truncation anywhere is refused too.
        for length in [0, 10, 63, 64, 80, encoded.count / 2, encoded.count - 1] {
            #expect(throws: HypervisorError.self) { _ = try MachineStateCodec.decode(Array(encoded.prefix(length))) }
        }
        // The damaged CRC of a vCPU section is reported for that section.
        var damaged = encoded
        let xsaveOffset = encoded.count / 3
        damaged[xsaveOffset] ^= 1
        do {
            _ = try MachineStateCodec.decode(damaged)
        } catch {
            #expect(error.message.contains("section"), "\(error.message)")
        }
    }

    @Test func anotherMajorVersionIsIncompatibleAndSaysWhich() throws {
        var encoded = MachineStateCodec.encode(Self.sampleState())
        encoded[8] = 2  // major version 2
        do {
            _ = try MachineStateCodec.decode(encoded)
            Issue.record("a version 2 state decoded")
        } catch {
            #expect(error.code == .incompatibleState)
            #expect(error.message.contains("2.0") && error.message.contains(MachineStateCodec.version), "\(error.message)")
        }
    }

    /// A running guest is paused, its state saved and its memory copied into a machine built by
    /// the second build path, which runs on: every writer verifies every page it owns (the guest
    /// powers off with success only then), and the UART keeps working.
    @Test(.enabled(if: hasKVM), arguments: [1, 4])
    func aRestoredMachineContinuesTheGuestWithEveryPageIntact(vcpus: Int) throws {
        let image = try testGuestImage()
        let console = RecordingConsole()
        let source = try VirtualMachine(configuration: memoryGuestConfiguration(image: image, vcpus: vcpus, console: console))
        let running = RunningMachine(source)
        #expect(console.wait(seconds: 20) { $0.contains("memgen:") })
        usleep(200_000)
        try source.pause()
        #expect(source.drainDevices(timeoutNanoseconds: 1_000_000_000))
        let state = try source.saveState()
        let bytes = MachineStateCodec.encode(state)
        let restoredState = try MachineStateCodec.decode(bytes)
        #expect(restoredState == state)

        let memory = try GuestMemory(size: source.memory.size)
        for region in source.memory.regions {
            let from = try #require(source.memory.hostPointer(at: region.guestAddress, count: region.size))
            let to = try #require(memory.hostPointer(at: region.guestAddress, count: region.size))
            to.copyMemory(from: from, byteCount: Int(region.size))
        }
        source.requestStop()
        _ = running.wait(seconds: 10)

        let console2 = RecordingConsole()
        let target = try VirtualMachine.restorable(configuration: memoryGuestConfiguration(image: image, vcpus: vcpus, console: console2),
                                                   memory: memory)
        #expect(throws: HypervisorError.self) { try target.run(timeLimit: 1) }  // not restored yet
        try target.restore(restoredState)
        #expect(target.restoreCount == state.restoreCount + 1)
        let reason = try target.run(timeLimit: 60)
        #expect(reason == .guestPoweredOff(status: 0), "\(reason)\n\(console2.text)")
        #expect(console2.text.contains("verified"), "\(console2.text)")
    }

    /// Pausing does not wait for the disk: with requests stuck 200 ms in a slow backend, every
    /// vCPU is out of the guest long before, and the requests complete while paused.
    @Test(.enabled(if: hasKVM)) func pauseDoesNotWaitForPendingDiskRequests() throws {
        let image = try testGuestImage()
        let disk = SlowDisk(byteCount: 64 << 20, delayMicroseconds: 200_000)
        let console = RecordingConsole()
        let machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
            vcpuCount: 2, memorySize: 64 << 20, disks: [disk],
            bootSource: .testGuest(TestGuestConfiguration(imagePath: image, workload: .diskSequence, arguments: [1024, 1, 0, 0])),
            console: console))
        let running = RunningMachine(machine)
        #expect(console.wait(seconds: 20) { $0.contains("sequence: boot") })
        var durations: [UInt64] = []
        for _ in 0..<20 {
            #expect(disk.waitForPendingRequest(seconds: 5))
            let start = DispatchTime.now().uptimeNanoseconds
            try machine.pause(timeoutNanoseconds: 1_000_000_000)
            durations.append(DispatchTime.now().uptimeNanoseconds - start)
            #expect(disk.pending > 0, "the request must still be in flight while the vCPUs are out")
            #expect(machine.drainDevices(timeoutNanoseconds: 5_000_000_000))
            machine.resume()
        }
        machine.requestStop()
        _ = running.wait(seconds: 10)
        durations.sort()
        print("pause with a disk request pending: median \(durations[durations.count / 2] / 1000) µs, max \(durations.last! / 1000) µs")
        #expect(durations.last! < 100_000_000, "pause waited for the disk: \(durations.last! / 1_000_000) ms")
    }
}

/// A disk whose every request takes `delay`: requests stay in flight while a test pauses.
final class SlowDisk: DiskBackend, @unchecked Sendable {
    let byteCount: UInt64
    let identifier = "slow"
    let isReadOnly = false
    let delay: UInt32
    private let lock = NSLock()
    private var inFlight = 0
    private var storage: [UInt64: [UInt8]] = [:]

    init(byteCount: UInt64, delayMicroseconds: UInt32) {
        self.byteCount = byteCount
        delay = delayMicroseconds
    }

    var pending: Int {
        lock.lock()
        defer { lock.unlock() }
        return inFlight
    }

    func waitForPendingRequest(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if pending > 0 { return true }
            usleep(200)
        }
        return false
    }

    private func around<T>(_ body: () -> T) -> T {
        lock.lock(); inFlight += 1; lock.unlock()
        usleep(delay)
        defer { lock.lock(); inFlight -= 1; lock.unlock() }
        return body()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        around {
            lock.lock()
            defer { lock.unlock() }
            for index in 0..<buffer.count / 512 {
                let sector = storage[offset / 512 + UInt64(index)] ?? [UInt8](repeating: 0, count: 512)
                UnsafeMutableRawBufferPointer(rebasing: buffer[(index * 512)..<((index + 1) * 512)]).copyBytes(from: sector)
            }
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        around {
            lock.lock()
            defer { lock.unlock() }
            for index in 0..<buffer.count / 512 {
                storage[offset / 512 + UInt64(index)] = Array(buffer[(index * 512)..<((index + 1) * 512)])
            }
        }
    }

    func flush() throws(DiskError) { around {} }
    func discard(offset: UInt64, length: UInt64) throws(DiskError) {}
}
