import Foundation
import Synchronization
import Testing
import VMFSTestSupport
@testable import VMFSCore

/// Heartbeat slots whose intervals are absurd cannot make anyone wait for days, and every wait
/// that depends on other hosts stops when interrupted.
@Suite("Hostile heartbeat slots")
struct HostileHeartbeatTests {
    /// Runs `body` on its own thread; its result, or nil when it takes longer than `seconds`.
    private func within<T: Sendable>(_ seconds: Int, _ body: @escaping @Sendable () throws -> T) -> Result<T, any Error>? {
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<Result<T, any Error>?>(nil)
        Thread.detachNewThread {
            let result = Result { try body() }
            box.withLock { $0 = result }
            done.signal()
        }
        return done.wait(timeout: .now() + .seconds(seconds)) == .success ? box.withLock { $0 } : nil
    }

    /// Writes a live slot `index` owned by `owner` that never changes (a host that died, or a forgery).
    private func forgeLiveSlot(_ device: MemoryBlockDevice, index: Int, owner: HostUUID,
                               renewMs: UInt32 = 100, deadMs: UInt32 = 1000) throws {
        let header = try Volume.readHeader(device)
        var slot = HeartbeatSlot(index: index)
        slot.state = .live
        slot.generation = 1
        slot.owner = owner
        slot.version = 1
        slot.renewIntervalMs = renewMs
        slot.deadIntervalMs = deadMs
        slot.ioTimeoutMs = 300
        let address = header.layout.heartbeatSlot(index)
        try device.write(bytes: slot.encoded(volumeID: header.volumeID, address: address), at: address)
    }

    @Test func aDeadIntervalOf49DaysCannotHoldARepair() throws {
        let device = try makeMemoryVolume()
        try forgeLiveSlot(device, index: 7, owner: HostUUID.random(), deadMs: UInt32.max)
        var options = CheckOptions()
        options.repair = true
        let repair = options
        let report = within(20) { VolumeChecker(device: device, options: repair).run() }
        let finished = try #require(try report?.get(), "fsck -y still watches the slot after 20 s")
        #expect(finished.exitCode == 1, "\(finished.problems)")
        #expect(finished.problems.contains { $0.structure == "heartbeat slot 7" && $0.message.contains("dead interval") },
                "\(finished.problems)")
        options.repair = false
        #expect(VolumeChecker(device: device.readOnlyView(), options: options).run().exitCode == 0)
    }

    @Test func aForgedSlotWithThisHostsIdentityCannotHoldItsMount() throws {
        let device = try makeMemoryVolume()
        let victim = hostOptions("victim")
        try forgeLiveSlot(device, index: 3, owner: victim.host.uuid, renewMs: UInt32.max)
        let mounted = within(20) { try Volume.mount(device: device, options: victim) }
        let volume = try #require(try mounted?.get(), "the mount still waits after 20 s")
        #expect(volume.membership?.slot != 3)
        try volume.unmount()
    }

    @Test func headerTimingOutsideItsBoundsIsRefused() throws {
        let device = try makeMemoryVolume()
        let attacker = try FieldRewriter(device: device)
        try attacker.rewrite(.volumeHeader, field: 204, to: UInt32.max)  // dead interval D
        #expect(throws: VMFSError.self) { try Volume.readHeader(device) }
        var format = FormatOptions()
        format.timing = HeartbeatTiming(renewIntervalMs: 3000, deadIntervalMs: 400_000, ioTimeoutMs: 8000)
        format.force = true
        #expect(throws: VMFSError.self) { try VolumeFormatter.format(MemoryBlockDevice(size: 1 << 30), options: format) }
    }

    // MARK: Interruptible waits

    @Test func anInterruptedCheckStopsAtOnceAndGivesItsSlotBack() throws {
        let device = try makeMemoryVolume()
        // A host that looks alive for its dead interval: the repair would watch it for 5 minutes.
        try forgeLiveSlot(device, index: 9, owner: HostUUID.random(), deadMs: HeartbeatTiming.maxDeadIntervalMs)
        var options = CheckOptions()
        options.repair = true
        options.interruption = Interruption()
        let interruption = options.interruption
        let started = Clock.monotonicNanoseconds
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) { interruption.request() }
        let report = VolumeChecker(device: device, options: options).run()
        #expect(Clock.monotonicNanoseconds - started < 5_000_000_000)
        #expect(report.exitCode == 32)
        #expect(report.interrupted?.contains("nothing was changed") == true, "\(String(describing: report.interrupted))")
        // Nothing was written, so hosts may mount at once.
        let volume = try Volume.mount(device: device, options: hostOptions("host"))
        try volume.unmount()
    }

    @Test func anInterruptedMountGivesUpWaitingForItsPreviousIncarnation() throws {
        let device = try makeMemoryVolume()
        var victim = hostOptions("victim")
        victim.interruption = Interruption()
        // Its previous incarnation's slot, with the longest renew interval allowed: 45 s of watching.
        try forgeLiveSlot(device, index: 3, owner: victim.host.uuid, renewMs: HeartbeatTiming.maxRenewIntervalMs,
                          deadMs: HeartbeatTiming.maxDeadIntervalMs)
        let interruption = victim.interruption
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) { interruption.request() }
        let started = Clock.monotonicNanoseconds
        #expect { try Volume.mount(device: device, options: victim) } throws: { ($0 as? VMFSError)?.code == .interrupted }
        #expect(Clock.monotonicNanoseconds - started < 5_000_000_000)
    }
}
