import Testing
import Synchronization
import VMFSTestSupport
@testable import VMFSCore
#if canImport(Glibc)
import Glibc
#endif

/// Freezes the first write made outside the heartbeat region by a thread other than the one
/// that made the gate, until ``release()``: it stops a volume's own background work in the
/// middle of a step.
final class WriteGate: Sendable {
    private let heartbeatRegion: Range<UInt64>
    private let owner = pthread_self()
    private let gate = Mutex<(frozen: pthread_t?, released: Bool)>((nil, false))

    init(heartbeatRegion: Range<UInt64>) { self.heartbeatRegion = heartbeatRegion }

    /// `base` with its writes going through the gate.
    func device(over base: any BlockDevice) -> WriteHookDevice {
        WriteHookDevice(base) { [self] (change, offset, _) in
            if change != .discard { holdIfFirst(offset) }
        }
    }

    /// True once a write is being held.
    var isHolding: Bool { gate.withLock { $0.frozen != nil && !$0.released } }

    /// Lets the held write (and every later one) through.
    func release() { gate.withLock { $0.released = true } }

    private func holdIfFirst(_ offset: UInt64) {
        let me = pthread_self()
        guard !heartbeatRegion.contains(offset), pthread_equal(me, owner) == 0 else { return }
        let hold = gate.withLock { g -> Bool in
            if g.released { return false }
            guard let frozen = g.frozen else {
                g.frozen = me
                return true
            }
            return pthread_equal(frozen, me) != 0
        }
        guard hold else { return }
        while !gate.withLock({ $0.released }) { usleep(1000) }
    }
}

/// Work a mounted volume starts by itself — recovering dead hosts, freeing the orphans of a
/// crashed unlink — ends before its unmount does: nothing of an unmounted host may touch the
/// volume afterwards (its heartbeat slot is free, its journal reset, another host may take both).
/// Found by LeakSanitizer in fuzz-volume-image: an orphan cleanup still reading the descriptors
/// after the input's unmount.
@Suite("Background work of a session")
struct BackgroundWorkTests {
    @Test func unmountWaitsForTheOrphanCleanupItStarted() throws {
        let memory = try makeMemoryVolume()
        let maker = try Volume.mount(device: memory, options: hostOptions("maker"))
        let victim = try maker.create("victim", access: .readWrite)
        try victim.write(bytes: pattern(8192, seed: 3), at: 0)
        let slot = victim.slot
        try victim.close()
        try maker.unmount()
        // A crash in the middle of an unlink leaves the name gone and the descriptor in use,
        // marked orphan (docs/FORMAT.md §5, §6).
        let attacker = try FieldRewriter(device: memory)
        for sector in 0..<16 {
            let bytes = try attacker.read(.nameTableSector(sector))
            for entry in 0..<16 where bytes[64 + 240 * entry] == 1
                && FieldRewriter.load(UInt16.self, from: bytes, at: 66 + 240 * entry) == UInt16(slot) {
                try attacker.rewrite(.nameTableSector(sector)) { $0.replaceSubrange((64 + 240 * entry)..<(304 + 240 * entry), with: [UInt8](repeating: 0, count: 240)) }
            }
        }
        let flags = try attacker.field(.fileDescriptor(slot: slot), at: 34, as: UInt16.self)
        try attacker.rewrite(.fileDescriptor(slot: slot), field: 34, to: flags | 4)

        let layout = try Volume.readHeader(memory).layout
        let gate = WriteGate(heartbeatRegion: layout.heartbeatOffset..<(layout.heartbeatOffset + UInt64(layout.maxHosts) * 4096))
        var options = hostOptions("host")
        options.commitIntervalMs = 60_000  // the committer writes nothing meanwhile
        let volume = try Volume.mount(device: gate.device(over: memory), options: options)
        for _ in 0..<1000 where !gate.isHolding { usleep(10_000) }
        try #require(gate.isHolding, "the orphan cleanup never wrote")

        final class Flag: Sendable {
            private let value = Atomic<Bool>(false)
            var isSet: Bool { value.load(ordering: .acquiring) }
            func set() { value.store(true, ordering: .releasing) }
        }
        let unmounted = Flag()
        let unmounting = BackgroundThread(name: "unmount") {
            try? volume.unmount()
            unmounted.set()
        }
        usleep(300_000)
        #expect(!unmounted.isSet, "unmount returned while the orphan cleanup it started was still writing")
        gate.release()
        unmounting.join()
        #expect(unmounted.isSet)
        let check = VolumeChecker(device: memory.readOnlyView(), options: CheckOptions()).run()
        #expect(check.exitCode == 0, "\(check.problems.map(\.message))")
    }
}
