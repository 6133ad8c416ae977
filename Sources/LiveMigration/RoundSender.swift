public import Hypervisor
internal import SystemSupport
internal import Synchronization

/// What one round put on the wire.
struct RoundStatistics: Sendable {
    var bytes: UInt64 = 0
    var dataPages: UInt64 = 0
    var zeroPages: UInt64 = 0

    static func + (a: RoundStatistics, b: RoundStatistics) -> RoundStatistics {
        RoundStatistics(bytes: a.bytes + b.bytes, dataPages: a.dataPages + b.dataPages, zeroPages: a.zeroPages + b.zeroPages)
    }
}

/// Sends a set of pages over every stream in parallel, then a barrier on each.
///
/// Guest memory is cut into 4 MiB chunks and chunk `c` always travels on stream `c mod N`, so a
/// page sent twice (two rounds) goes twice through the same stream and arrives in order. Pages
/// that read as zeros (never populated, or all-zero) go as ranges, not bytes.
struct RoundSender: Sendable {
    static let chunkShift: UInt64 = 22
    static let wordsPerChunk = 16

    let memory: GuestMemory
    let streams: [MigrationStream]
    /// 0: unlimited; else the bytes per second all streams together may send.
    let bandwidthLimit: UInt64
    let cancelled: @Sendable () -> Bool

    /// The stream that carries the page at `address`.
    func streamIndex(of address: UInt64) -> Int { Int((address >> Self.chunkShift) % UInt64(streams.count)) }

    /// Sends every page set in `pages`, then `barrier(round)` on every stream.
    ///
    /// - Parameter populated: Per region, the pages that may hold data (round 0); pages outside
    ///   it go as zero ranges without being read. nil: look at every page.
    func send(_ pages: DirtyPages, round: UInt64, populated: [[UInt64]]?) throws(MigrationError) -> RoundStatistics {
        let results = Locked<[Result<RoundStatistics, MigrationError>]>([])
        let failed = StopFlag()
        var threads: [NativeThread] = []
        for stream in streams {
            do {
                threads.append(try NativeThread(name: "mig-tx-\(stream.index)") {
                    let result: Result<RoundStatistics, MigrationError>
                    do throws(MigrationError) {
                        result = .success(try sendShare(of: pages, on: stream, round: round, populated: populated, failed: failed))
                    } catch {
                        failed.raise()
                        stream.shutdown()
                        result = .failure(error)
                    }
                    results.withLock { $0.append(result) }
                })
            } catch {
                failed.raise()
                for thread in threads { thread.join() }
                throw MigrationError(.connection, "cannot start a sending thread: \(error)")
            }
        }
        for thread in threads { thread.join() }
        var total = RoundStatistics()
        for result in results.withLock({ $0 }) {
            switch result {
            case .success(let statistics): total = total + statistics
            case .failure(let error): throw error
            }
        }
        return total
    }

    private func sendShare(of pages: DirtyPages, on stream: MigrationStream, round: UInt64, populated: [[UInt64]]?,
                           failed: StopFlag) throws(MigrationError) -> RoundStatistics {
        var statistics = RoundStatistics()
        let started = MonotonicClock.nanoseconds
        let share = bandwidthLimit / UInt64(streams.count)
        let pageSize = UInt64(MigrationProtocol.pageSize)
        var zeroStart: UInt64?
        var zeroCount: UInt64 = 0
        var dataStart: UInt64?
        var dataCount = 0

        func pace() {
            guard share > 0 else { return }
            let due = started + statistics.bytes * 1_000_000_000 / share
            let now = MonotonicClock.nanoseconds
            if due > now { MonotonicClock.sleep(nanoseconds: due - now) }
        }
        func flushZeros() throws(MigrationError) {
            guard let start = zeroStart else { return }
            try stream.send(.zeros(address: start, count: zeroCount))
            statistics.bytes += 40
            statistics.zeroPages += zeroCount
            zeroStart = nil
            zeroCount = 0
        }
        func flushData() throws(MigrationError) {
            guard let start = dataStart else { return }
            guard let source = memory.hostPointer(at: start, count: UInt64(dataCount) * pageSize) else {
                throw MigrationError(.hypervisor, "pages at 0x\(String(start, radix: 16)) are outside guest memory")
            }
            try stream.send(plaintext: MigrationMessage.pagesPlaintext(address: start, count: dataCount, from: source))
            statistics.bytes += UInt64(dataCount) * pageSize + 44
            statistics.dataPages += UInt64(dataCount)
            dataStart = nil
            dataCount = 0
            pace()
        }

        for (regionIndex, region) in pages.regions.enumerated() {
            let words = pages.bitmaps[regionIndex]
            let present = populated?[regionIndex]
            for chunkStart in stride(from: 0, to: words.count, by: Self.wordsPerChunk) {
                let chunkAddress = region.guestAddress + UInt64(chunkStart) * 64 * pageSize
                guard streamIndex(of: chunkAddress) == stream.index else { continue }
                if failed.isRaised || cancelled() {
                    throw MigrationError(.cancelled, "the round was stopped")
                }
                for wordIndex in chunkStart..<min(words.count, chunkStart + Self.wordsPerChunk) {
                    let word = words[wordIndex]
                    if word == 0 {
                        try flushZeros()
                        try flushData()
                        continue
                    }
                    for bit in 0..<64 {
                        let address = region.guestAddress + (UInt64(wordIndex) * 64 + UInt64(bit)) * pageSize
                        guard word & (UInt64(1) << UInt64(bit)) != 0 else {
                            try flushZeros()
                            try flushData()
                            continue
                        }
                        let mayHoldData = present.map { $0[wordIndex] & (UInt64(1) << UInt64(bit)) != 0 } ?? true
                        if !mayHoldData || memory.isZeroPage(at: address) {
                            try flushData()
                            if zeroStart == nil { zeroStart = address }
                            zeroCount += 1
                        } else {
                            try flushZeros()
                            if dataStart == nil { dataStart = address }
                            dataCount += 1
                            if dataCount == MigrationProtocol.pagesPerRecord { try flushData() }
                        }
                    }
                }
                // Runs never cross a chunk (the next chunk may travel on another stream).
                try flushZeros()
                try flushData()
            }
        }
        try stream.send(.barrier(round: round))
        return statistics
    }
}

/// A flag threads raise once and others poll.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func raise() { value.store(true, ordering: .releasing) }
    var isRaised: Bool { value.load(ordering: .acquiring) }
}

/// A value shared between threads under a mutex, as a reference (a `Mutex` cannot be captured).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
