public import Hypervisor
internal import SystemSupport

/// The destination's side of post-copy: which pages the source still owns, which have arrived,
/// and the thread that turns the guest's faults on missing pages into requests to the source.
///
/// Every missing page is either *needed* (the source wrote it after it last sent it: ask the
/// source, wait for it) or was never written anywhere (install zeros at once). Pages arrive
/// through ``install(_:at:)`` (`UFFDIO_COPY`, which also wakes whoever faulted on them); when
/// the last needed page is in, the memory is unregistered and the source is told.
final class PostCopyPages: Sendable {
    private struct State {
        var needed: DirtyPages
        var missing: Int
        var requested: Set<UInt64> = []
        var lostReason: String?
        var complete = false
        var started = false
    }

    private let memory: GuestMemory
    private let faults: GuestMemoryFaults
    private let state: Monitor<State>
    private let request: @Sendable (UInt64) -> Void
    private let done: @Sendable () -> Void

    init(memory: GuestMemory, needed ranges: [PageRange], request: @escaping @Sendable (UInt64) -> Void,
         done: @escaping @Sendable () -> Void) throws(HypervisorError) {
        self.memory = memory
        self.request = request
        self.done = done
        var needed = DirtyPages.none(memory.regions)
        var missing = 0
        let pageSize = UInt64(MigrationProtocol.pageSize)
        for range in ranges {
            try memory.discard(range.address, count: range.count * pageSize)
            for page in 0..<range.count {
                if needed.insert(range.address + page * pageSize) { missing += 1 }
            }
        }
        faults = try GuestMemoryFaults(memory: memory)
        state = Monitor(State(needed: needed, missing: missing, complete: missing == 0))
    }

    var isComplete: Bool { state.withLock { $0.complete } }

    /// Starts resolving faults.
    func start() throws(SystemError) {
        let complete = state.withLock { s -> Bool in
            s.started = true
            return s.complete
        }
        if complete {
            finish()
            return
        }
        try NativeThread.detach(name: "mig-faults") { [self] in resolveFaults() }
    }

    private func resolveFaults() {
        while !state.withLock({ $0.complete || $0.lostReason != nil }) {
            let address: UInt64?
            do { address = try faults.nextFault(timeoutMilliseconds: 50) } catch { return }
            guard let address else { continue }
            let ask = state.withLock { s -> Bool? in
                guard s.needed.contains(address) else { return nil }
                return s.requested.insert(address).inserted
            }
            switch ask {
            case nil:
                // Never written at the source since it was sent: a page that reads as zeros.
                try? faults.installZeros(at: address, count: GuestMemory.bytesPerPage)
            case true?:
                request(address)
            case false?:
                break  // asked already; its arrival wakes this fault too
            }
        }
    }

    /// Installs pages that arrived (a request's answer or the background push).
    func install(_ bytes: [UInt8], at address: UInt64) throws(MigrationError) {
        let failure: HypervisorError? = bytes.withUnsafeBytes { raw in
            do throws(HypervisorError) {
                try faults.install(raw, at: address)
                return nil
            } catch {
                return error
            }
        }
        if let failure {
            throw MigrationError(.hypervisor, "post-copy: installing pages at 0x\(String(address, radix: 16)): \(failure)")
        }
        arrived(address, count: UInt64(bytes.count) / GuestMemory.bytesPerPage)
    }

    func installZeros(at address: UInt64, count: UInt64) throws(MigrationError) {
        do { try faults.installZeros(at: address, count: count * GuestMemory.bytesPerPage) } catch {
            throw MigrationError(.hypervisor, "post-copy: installing zero pages at 0x\(String(address, radix: 16)): \(error)")
        }
        arrived(address, count: count)
    }

    private func arrived(_ address: UInt64, count: UInt64) {
        let finished = state.withLock { s -> Bool in
            for page in 0..<count where s.needed.remove(address + page * GuestMemory.bytesPerPage) { s.missing -= 1 }
            guard s.missing == 0, !s.complete else { return false }
            s.complete = true
            return s.started
        }
        if finished { finish() }
    }

    private func finish() {
        faults.close()
        done()
    }

    /// The source went away with pages still missing: the guest cannot go on.
    func sourceLost(_ reason: String) {
        state.withLock { s in if !s.complete { s.lostReason = reason } }
    }

    func waitUntilComplete() -> (complete: Bool, reason: String?) {
        state.wait(for: { $0.complete || $0.lostReason != nil }) { s in (s.complete, s.lostReason) } ?? (false, "interrupted")
    }
}

extension DirtyPages {
    /// Sets the page at `address`; false when it was set already (or is outside the regions).
    mutating func insert(_ address: UInt64) -> Bool {
        for (index, region) in regions.enumerated() where address >= region.guestAddress && address < region.guestEnd {
            let page = Int((address - region.guestAddress) / GuestMemory.bytesPerPage)
            let bit = UInt64(1) << UInt64(page % 64)
            let was = bitmaps[index][page / 64] & bit != 0
            bitmaps[index][page / 64] |= bit
            return !was
        }
        return false
    }

    /// Clears the page at `address`; true when it was set.
    mutating func remove(_ address: UInt64) -> Bool {
        for (index, region) in regions.enumerated() where address >= region.guestAddress && address < region.guestEnd {
            let page = Int((address - region.guestAddress) / GuestMemory.bytesPerPage)
            let bit = UInt64(1) << UInt64(page % 64)
            let was = bitmaps[index][page / 64] & bit != 0
            bitmaps[index][page / 64] &= ~bit
            return was
        }
        return false
    }
}
