import Foundation
import Hypervisor
import LiveMigration
import SystemSupport
import Testing

/// The migration engine between two machines of one process, over socket pairs: what the VMMs
/// do once their agents connected them.
@Suite("Live migration engine", .serialized, .enabled(if: hasKVM))
struct MigrationEngineTests {
    struct Outcome {
        var ready: SwitchoverReady
        var progress: [MigrationProgress]
        var reason: PowerOffReason?
        var text: String
    }

    /// Migrates a running memory-generations guest and runs it at the destination until it
    /// powers off (after verifying its pages).
    static func migrate(vcpus: Int, bytes: UInt64 = 8 << 20, rate: UInt64 = 0, streams: Int = 2, options: MigrationOptions,
                        warmupMilliseconds: UInt32 = 300) throws -> Outcome {
        let image = try testGuestImage()
        let console = RecordingConsole()
        let sourceMachine = try VirtualMachine(configuration: memoryGuestConfiguration(image: image, vcpus: vcpus, bytes: bytes, rate: rate,
                                                                                       console: console))
        let running = RunningMachine(sourceMachine)
        #expect(console.wait(seconds: 20) { $0.contains("memgen:") })
        usleep(warmupMilliseconds * 1000)

        let destinationConsole = RecordingConsole()
        let target = try VirtualMachine.restorable(configuration: memoryGuestConfiguration(image: image, vcpus: vcpus, bytes: bytes, rate: rate,
                                                                                           console: destinationConsole))
        let (sending, receiving) = try streamPairs(streams)
        let destination = MigrationDestination(machine: target, streams: receiving, vmUUID: "vm-1")
        let received = Locked<Result<VirtualMachine, MigrationError>?>(nil)
        let receiver = Thread {
            do throws(MigrationError) { received.set(.success(try destination.receive())) } catch { received.set(.failure(error)) }
        }
        receiver.start()
        let progress = Locked<[MigrationProgress]>([])
        let source = MigrationSource(machine: sourceMachine, streams: sending, options: options, vmUUID: "vm-1") { update in
            progress.update { $0.append(update) }
        }
        let ready = try source.run()
        #expect(eventually { received.get() != nil })
        guard case .success(let restored)? = received.get() else {
            Issue.record("the destination failed: \(String(describing: received.get()))")
            throw MigrationError(.refused, "destination failed")
        }
        // Handoff: the destination runs, the source finishes (serving post-copy pages if needed).
        try destination.startPostCopy()
        let destinationRun = RunningMachine(restored)
        try source.finishAfterHandoff()
        if ready.postCopy { #expect(destination.waitForPostCopy().complete) }
        sourceMachine.requestStop()
        _ = running.wait(seconds: 10)
        let reason = destinationRun.wait(seconds: 60)
        destination.close()
        return Outcome(ready: ready, progress: progress.get(), reason: reason, text: destinationConsole.text)
    }

    @Test(arguments: [1, 4]) func preCopyMovesARunningGuestWithEveryPageIntact(vcpus: Int) throws {
        let outcome = try Self.migrate(vcpus: vcpus, options: MigrationOptions(downtimeBudgetMilliseconds: 50, streams: 2))
        #expect(!outcome.ready.postCopy)
        #expect(outcome.reason == .guestPoweredOff(status: 0), "\(String(describing: outcome.reason))\n\(outcome.text)")
        #expect(outcome.text.contains("verified"), "\(outcome.text)")
        let last = try #require(outcome.progress.last)
        #expect(last.round >= 0 && last.transferredBytes > 0 && last.zeroPages > 0)
    }

    /// A guest that dirties memory faster than a 40 MB/s link still moves: auto-converge
    /// throttles it, and if that is not enough, post-copy finishes the move.
    @Test func aGuestDirtyingFasterThanTheLinkConverges() throws {
        let outcome = try Self.migrate(vcpus: 2, bytes: 16 << 20, options: MigrationOptions(
            downtimeBudgetMilliseconds: 50, streams: 2, maximumBandwidthBytesPerSecond: 40 << 20, maximumRounds: 12))
        #expect(outcome.reason == .guestPoweredOff(status: 0), "\(String(describing: outcome.reason))\n\(outcome.text)")
        let throttled = outcome.progress.contains { $0.throttlePercent > 0 }
        #expect(throttled || outcome.ready.postCopy, "neither auto-converge nor post-copy happened: \(outcome.progress.map(\.expectedDowntimeMilliseconds))")
    }

    /// Post-copy by itself (no throttling, two rounds): the destination runs while pages are
    /// still at the source, faults them in, and every page is right.
    @Test func postCopyMovesAGuestThatDoesNotConverge() throws {
        let outcome = try Self.migrate(vcpus: 2, bytes: 16 << 20, options: MigrationOptions(
            downtimeBudgetMilliseconds: 1, streams: 3, maximumBandwidthBytesPerSecond: 60 << 20, autoConverge: false, postCopy: true,
            maximumRounds: 2))
        #expect(outcome.ready.postCopy && outcome.ready.outstandingPages > 0)
        #expect(outcome.reason == .guestPoweredOff(status: 0), "\(String(describing: outcome.reason))\n\(outcome.text)")
        #expect(outcome.text.contains("verified"), "\(outcome.text)")
    }

    /// A source of another stream protocol, or of another machine-state major, is refused at the
    /// hello before anything moves: the destination fails with `versionMismatch` and tells the
    /// source why, naming both versions.
    @Test(arguments: [(MigrationProtocol.version + 1, MachineStateCodec.version, "protocol"), (MigrationProtocol.version, "9.0", "format")])
    func anotherVersionIsRefusedAtTheHelloNamingBoth(protocolVersion: Int, stateFormat: String, what: String) throws {
        let target = try VirtualMachine.restorable(configuration: memoryGuestConfiguration(image: try testGuestImage(), vcpus: 1,
                                                                                           console: RecordingConsole()))
        let (sending, receiving) = try streamPairs(1)
        let destination = MigrationDestination(machine: target, streams: receiving, vmUUID: "vm-1", handshakeTimeoutMilliseconds: 10_000)
        defer { destination.close() }
        try sending[0].send(.hello(MigrationHello(protocolVersion: protocolVersion, stateFormat: stateFormat, vmUUID: "vm-1", vcpuCount: 1,
                                                  memoryBytes: target.memory.size, diskCount: 1, streamCount: 1)))
        let error = #expect(throws: MigrationError.self) { try destination.receive() }
        #expect(error?.code == .versionMismatch, "\(String(describing: error))")
        guard case .helloReply(let reply)? = try sending[0].receive(timeoutMilliseconds: 10_000) else {
            Issue.record("the source got no hello reply")
            return
        }
        #expect(!reply.accepted)
        let ours = what == "protocol" ? "\(MigrationProtocol.version)" : MachineStateCodec.version
        let theirs = what == "protocol" ? "\(protocolVersion)" : stateFormat
        let reason = reply.reason ?? ""
        #expect(reason.contains(what) && reason.contains(ours) && reason.contains(theirs), "\(reason)")
    }
}

/// Polls `condition` every 10 ms for up to `seconds`.
func eventually(seconds: Double = 30, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A value shared with another thread.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ newValue: Value) { lock.lock(); value = newValue; lock.unlock() }
    func update(_ body: (inout Value) -> Void) { lock.lock(); body(&value); lock.unlock() }
}
