public import Hypervisor
internal import SystemSupport
internal import Synchronization
internal import CVMFSLinux

/// The sending side of a live migration, run by the source VMM: pre-copy with dirty logging,
/// auto-converge, stop-and-copy within the downtime budget or the switch to post-copy.
///
/// ``run()`` returns with the guest paused and its state restored at the destination
/// (``SwitchoverReady``); the caller then hands the VM's files over and either finishes
/// (``finishAfterHandoff()``, which serves post-copy pages when needed) or gives up
/// (``resumeAfterFailure()``: the guest runs on here). A failure inside ``run()`` leaves the guest
/// running here.
public final class MigrationSource: Sendable {
    public let machine: VirtualMachine
    public let streams: [MigrationStream]
    public let options: MigrationOptions
    let guest: GuestPauseControl
    let hello: MigrationHello
    let report: @Sendable (MigrationProgress) -> Void
    let inbox: StreamInbox
    private let cancelFlag = StopFlag()
    private let progressState = Mutex(MigrationProgress())
    /// Post-copy: the pages the destination still lacks.
    private let outstanding = Mutex<DirtyPages?>(nil)

    /// Throttle steps (QEMU's defaults): start at 20 %, add 10 % per round that still does not converge.
    static let initialThrottle = 20
    static let throttleStep = 10
    static let maximumThrottle = 99
    /// The barrier round that ends the post-copy push.
    static let postCopyRound: UInt64 = 1 << 40

    /// - Parameters:
    ///   - guest: How to pause and resume the guest (the VMM keeps its own pause reasons); by
    ///     default the machine's own ``VirtualMachine/pause(timeoutNanoseconds:)`` and ``VirtualMachine/resume()``.
    ///   - report: Called with the progress after every round (on the migrating thread).
    public init(machine: VirtualMachine, streams: [MigrationStream], options: MigrationOptions, vmUUID: String,
                guest: GuestPauseControl? = nil, report: @escaping @Sendable (MigrationProgress) -> Void) {
        self.machine = machine
        self.guest = guest ?? GuestPauseControl(machine: machine)
        self.streams = streams
        self.options = options
        self.report = report
        hello = MigrationHello(stateFormat: MachineStateCodec.version, vmUUID: vmUUID, vcpuCount: machine.configuration.vcpuCount,
                               memoryBytes: machine.memory.size, diskCount: machine.configuration.disks.count, streamCount: streams.count)
        inbox = StreamInbox(streamCount: streams.count)
    }

    /// Stops the migration at the next opportunity (before the handoff only).
    public func cancel() {
        cancelFlag.raise()
        inbox.fail(MigrationError(.cancelled, "the migration was cancelled"))
    }

    public var progress: MigrationProgress { progressState.withLock { $0 } }

    private func publish(_ update: (inout MigrationProgress) -> Void) {
        let snapshot = progressState.withLock { p -> MigrationProgress in
            update(&p)
            p.throttlePercent = machine.throttlePercent
            return p
        }
        report(snapshot)
    }

    private var stallNanoseconds: UInt64 { options.stallTimeoutMilliseconds * 1_000_000 }

    /// Pre-copy until the last round fits the downtime budget, then stop-and-copy (or post-copy).
    public func run() throws(MigrationError) -> SwitchoverReady {
        try options.validate()
        guard let control = streams.first else { throw MigrationError(.refused, "a migration needs at least one stream") }
        let sender = RoundSender(memory: machine.memory, streams: streams, bandwidthLimit: options.maximumBandwidthBytesPerSecond,
                                 cancelled: { [cancelFlag] in cancelFlag.isRaised })
        try inbox.start(streams) { [weak self] index, message in
            guard let self, case .pageRequest(let address) = message else { return true }
            self.serveRequest(address, on: index)
            return false
        }
        try control.send(.hello(hello))
        let reply = try inbox.waitFor("hello reply", deadline: MonotonicClock.nanoseconds + stallNanoseconds * 4) {
            if case .helloReply = $0 { true } else { false }
        }
        guard case .helloReply(let answer) = reply, answer.accepted else {
            if case .helloReply(let answer) = reply {
                let code: MigrationError.Code = answer.protocolVersion != MigrationProtocol.version
                    || answer.stateFormat.split(separator: ".").first != MachineStateCodec.version.split(separator: ".").first
                    ? .versionMismatch : .refused
                throw MigrationError(code, "the destination refused: \(answer.reason ?? "no reason given")")
            }
            throw MigrationError(.malformed, "the destination's first answer was not a hello reply")
        }

        do { try machine.startDirtyTracking() } catch { throw MigrationError(.hypervisor, "dirty tracking: \(error)") }
        do throws(MigrationError) {
            return try iterate(sender)
        } catch {
            stopTracking()
            throw error
        }
    }

    private func stopTracking() {
        machine.setThrottle(percent: 0)
        machine.stopDirtyTracking()
    }

    private func iterate(_ sender: RoundSender) throws(MigrationError) -> SwitchoverReady {
        let begun = MonotonicClock.nanoseconds
        let deadline = begun + options.timeoutSeconds * 1_000_000_000
        var populated: [[UInt64]] = []
        for region in machine.memory.regions {
            do { populated.append(try machine.memory.populatedPages(region)) } catch {
                throw MigrationError(.hypervisor, "reading which pages are populated: \(error)")
            }
        }
        var pending = DirtyPages.all(machine.memory.regions)
        var round: UInt64 = 0
        var bandwidth: Double = 0
        var slowRounds = 0
        publish { $0 = MigrationProgress(phase: .preCopy, remainingBytes: machine.memory.size) }
        while true {
            let roundStart = MonotonicClock.nanoseconds
            let statistics = try sender.send(pending, round: round, populated: round == 0 ? populated : nil)
            try inbox.waitForBarrier(round, deadline: MonotonicClock.nanoseconds + stallNanoseconds)
            let roundEnd = MonotonicClock.nanoseconds
            let seconds = Double(max(roundEnd - roundStart, 1)) / 1e9
            if statistics.bytes >= 1 << 20 || bandwidth == 0 {
                let sample = Double(statistics.bytes) / seconds
                bandwidth = bandwidth == 0 ? sample : 0.5 * bandwidth + 0.5 * sample
            }
            let dirty: DirtyPages
            do { dirty = try machine.takeDirtyPages() } catch { throw MigrationError(.hypervisor, "harvesting dirty pages: \(error)") }
            let dirtyBytes = UInt64(dirty.count) * UInt64(MigrationProtocol.pageSize)
            let dirtyRate = Double(dirtyBytes) / seconds
            let expected = expectedDowntime(bytes: dirtyBytes, bandwidth: bandwidth)
            publish { p in
                p.round = Int(round)
                p.transferredBytes = streams.reduce(0) { $0 + $1.bytesSent }
                p.remainingBytes = dirtyBytes
                p.dirtyRateBytesPerSecond = UInt64(dirtyRate)
                p.bandwidthBytesPerSecond = UInt64(bandwidth)
                p.expectedDowntimeMilliseconds = expected
                p.dataPages += statistics.dataPages
                p.zeroPages += statistics.zeroPages
            }
            if cancelFlag.isRaised { throw MigrationError(.cancelled, "the migration was cancelled") }
            if expected <= Double(options.downtimeBudgetMilliseconds) {
                return try stopAndCopy(dirty, sender: sender, round: round + 1, postCopy: false)
            }
            round += 1
            // Not converging: the guest dirties more than half of what the link moves.
            if dirtyRate > bandwidth / 2 { slowRounds += 1 } else { slowRounds = 0 }
            let throttle = machine.throttlePercent
            let outOfRounds = round >= UInt64(options.maximumRounds) || MonotonicClock.nanoseconds >= deadline
            let throttledOut = !options.autoConverge || (throttle >= Self.maximumThrottle && slowRounds >= 2)
            if outOfRounds || (throttledOut && slowRounds >= 3 && round >= 3) {
                if options.postCopy { return try stopAndCopy(dirty, sender: sender, round: round, postCopy: true) }
                throw MigrationError(.notConverging, "after \(round) rounds the guest still dirties \(UInt64(dirtyRate) >> 20) MiB/s "
                                     + "against \(UInt64(bandwidth) >> 20) MiB/s of link (throttled \(throttle) %); the switchover would take "
                                     + "\(Int(expected)) ms, over the budget of \(options.downtimeBudgetMilliseconds) ms")
            }
            if options.autoConverge && slowRounds >= 2 && round >= 2 {
                machine.setThrottle(percent: throttle == 0 ? Self.initialThrottle : min(Self.maximumThrottle, throttle + Self.throttleStep))
            }
            pending = dirty
        }
    }

    /// Milliseconds to send `bytes` and the state at `bandwidth` bytes/s, plus the pause and restore.
    private func expectedDowntime(bytes: UInt64, bandwidth: Double) -> Double {
        let stateBytes = Double(machine.configuration.vcpuCount * 8 << 10 + 16 << 10)
        let rate = max(bandwidth, Double(1 << 20))
        return (Double(bytes) + stateBytes) / rate * 1000 + 2
    }

    /// Pauses the guest, sends what is left (or, for post-copy, what is missing) and the state,
    /// and waits until the destination restored it.
    private func stopAndCopy(_ dirty: DirtyPages, sender: RoundSender, round: UInt64, postCopy: Bool) throws(MigrationError) -> SwitchoverReady {
        publish { $0.phase = .stopAndCopy }
        machine.setThrottle(percent: 0)
        let pausedWall = cvmfs_realtime_ns()
        do { try guest.pause() } catch { throw MigrationError(.hypervisor, "pausing the guest: \(error)") }
        // The switchover must not outlast its bound: past it the streams are cut and the guest resumes here.
        let watchdog = Watchdog(deadline: MonotonicClock.nanoseconds + switchoverLimitNanoseconds) { [streams] in
            for stream in streams { stream.shutdown() }
        }
        defer { watchdog.cancel() }
        do throws(MigrationError) {
            guard machine.drainDevices(timeoutNanoseconds: switchoverLimitNanoseconds) else {
                throw MigrationError(.timedOut, "device requests did not complete after the pause")
            }
            var final = dirty
            do { final.formUnion(try machine.takeDirtyPages()) } catch {
                throw MigrationError(.hypervisor, "harvesting dirty pages: \(error)")
            }
            var finalPages = 0
            if postCopy {
                try sendNeeded(final)
                outstanding.withLock { $0 = final }
            } else {
                let statistics = try sender.send(final, round: round, populated: nil)
                try inbox.waitForBarrier(round, deadline: MonotonicClock.nanoseconds + stallNanoseconds)
                finalPages = Int(statistics.dataPages + statistics.zeroPages)
                publish { p in
                    p.dataPages += statistics.dataPages
                    p.zeroPages += statistics.zeroPages
                    p.remainingBytes = 0
                }
            }
            let state: [UInt8]
            do { state = MachineStateCodec.encode(try machine.saveState()) } catch {
                throw MigrationError(.hypervisor, "saving the machine state: \(error)")
            }
            try streams[0].send(.state(state))
            _ = try inbox.waitFor("state acknowledgement", deadline: MonotonicClock.nanoseconds + stallNanoseconds) {
                if case .stateApplied = $0 { true } else { false }
            }
            publish { p in
                p.transferredBytes = streams.reduce(0) { $0 + $1.bytesSent }
                p.phase = postCopy ? .postCopy : .stopAndCopy
            }
            return SwitchoverReady(postCopy: postCopy, pausedWallNanoseconds: pausedWall, finalPages: finalPages,
                                   stateBytes: state.count, outstandingPages: postCopy ? final.count : 0)
        } catch {
            outstanding.withLock { $0 = nil }
            guest.resume()
            if watchdog.fired {
                throw MigrationError(.timedOut, "the switchover took longer than \(switchoverLimitNanoseconds / 1_000_000) ms; the guest runs on here (\(error.message))")
            }
            throw error
        }
    }

    /// How long the guest may stay paused for the final copy before the migration is abandoned:
    /// twenty times the budget, at least a second.
    var switchoverLimitNanoseconds: UInt64 { max(1000, options.downtimeBudgetMilliseconds * 20) * 1_000_000 }

    /// Post-copy: tells the destination which page ranges it must not trust yet.
    private func sendNeeded(_ pages: DirtyPages) throws(MigrationError) {
        var ranges: [PageRange] = []
        var failure: MigrationError?
        pages.forEachRun(maximumRun: Int.max) { address, count in
            ranges.append(PageRange(address: address, count: UInt64(count)))
        }
        for start in stride(from: 0, to: max(ranges.count, 1), by: MigrationMessage.maximumRanges) {
            let slice = Array(ranges[start..<min(ranges.count, start + MigrationMessage.maximumRanges)])
            do { try streams[0].send(.neededRanges(slice)) } catch {
                failure = error
                break
            }
        }
        if let failure { throw failure }
    }

    // MARK: After the switchover

    /// The handoff failed (or was refused): the guest runs on here.
    public func resumeAfterFailure(_ reason: String) {
        for stream in streams {
            try? stream.send(.abort(reason))
            stream.shutdown()
        }
        stopTracking()
        guest.resume()
        publish { $0.phase = .failed }
    }

    /// The destination owns the VM now. Pre-copy: tells it so and closes. Post-copy: pushes every
    /// page it still lacks (and serves its requests first) until it has them all.
    public func finishAfterHandoff() throws(MigrationError) {
        defer {
            for stream in streams { stream.shutdown() }
            machine.stopDirtyTracking()
        }
        guard let pages = outstanding.withLock({ $0 }) else {
            for stream in streams { try? stream.send(.complete) }
            publish { $0.phase = .completed }
            return
        }
        // Stream 0 answers requests; the others push (all of them when there is only one).
        let pushers = streams.count > 1 ? Array(streams.dropFirst()) : streams
        let pusher = RoundSender(memory: machine.memory, streams: pushers, bandwidthLimit: options.maximumBandwidthBytesPerSecond,
                                 cancelled: { false })
        let statistics = try pusher.send(pages, round: Self.postCopyRound, populated: nil)
        for stream in streams { try stream.send(.complete) }
        publish { p in
            p.dataPages += statistics.dataPages
            p.zeroPages += statistics.zeroPages
            p.remainingBytes = 0
        }
        _ = try inbox.waitFor("post-copy completion", deadline: MonotonicClock.nanoseconds + stallNanoseconds * 10) {
            if case .postCopyDone = $0 { true } else { false }
        }
        publish { p in
            p.transferredBytes = streams.reduce(0) { $0 + $1.bytesSent }
            p.phase = .completed
        }
    }

    /// Answers a post-copy page request on stream 0 (called on a receiving thread).
    private func serveRequest(_ address: UInt64, on streamIndex: Int) {
        guard outstanding.withLock({ $0?.contains(address) ?? false }),
              let source = machine.memory.hostPointer(at: address, count: UInt64(MigrationProtocol.pageSize)) else { return }
        try? streams[0].send(plaintext: MigrationMessage.pagesPlaintext(address: address, count: 1, from: source))
    }
}

/// Runs `action` once at `deadline` unless cancelled first.
final class Watchdog: Sendable {
    private let state = Monitor((cancelled: false, fired: false))

    init(deadline: UInt64, _ action: @escaping @Sendable () -> Void) {
        try? NativeThread.detach(name: "mig-watchdog") { [state] in
            let expired = state.wait(until: deadline, for: { $0.cancelled }) { _ in false } ?? true
            guard expired else { return }
            let fire = state.withLock { s -> Bool in
                guard !s.cancelled else { return false }
                s.fired = true
                return true
            }
            if fire { action() }
        }
    }

    func cancel() { state.withLock { $0.cancelled = true } }
    var fired: Bool { state.withLock { $0.fired } }
}

/// How the migration pauses and resumes the guest.
public struct GuestPauseControl: Sendable {
    public var pause: @Sendable () throws(HypervisorError) -> Void
    public var resume: @Sendable () -> Void

    public init(pause: @escaping @Sendable () throws(HypervisorError) -> Void, resume: @escaping @Sendable () -> Void) {
        self.pause = pause
        self.resume = resume
    }

    /// The machine's own pause and resume.
    public init(machine: VirtualMachine) {
        pause = { () throws(HypervisorError) in try machine.pause(timeoutNanoseconds: 1_000_000_000) }
        resume = { machine.resume() }
    }
}
