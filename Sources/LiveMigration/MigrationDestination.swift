public import Hypervisor
internal import SystemSupport
internal import Synchronization

/// The receiving side of a live migration, run by the destination VMM: takes pages into guest
/// memory as they come, restores the state into a machine built in advance, and for post-copy
/// resolves the guest's faults on missing pages by asking the source.
///
/// ``receive()`` returns the restored (not yet running) machine; the caller runs it once the
/// VM's files are handed over (after ``startPostCopy()`` when ``isPostCopy``).
public final class MigrationDestination: Sendable {
    public let machine: VirtualMachine
    public let streams: [MigrationStream]
    let vmUUID: String
    let handshakeTimeoutMilliseconds: Int32

    private struct State {
        var barriers: [UInt64?]
        var state: [UInt8]?
        var needed: [PageRange] = []
        var failure: MigrationError?
        var postCopy: PostCopyPages?
        var completedStreams = 0
        var dataPages: UInt64 = 0
        var zeroPages: UInt64 = 0
        /// When the last message arrived on any stream (monotonic ns).
        var lastActivity = MonotonicClock.nanoseconds
    }

    /// Until the state arrives, silence on every stream for this long means the source or the
    /// link is gone (a cut link sends no reset): the destination gives up.
    let idleTimeoutNanoseconds: UInt64

    private let state: Monitor<State>

    /// - Parameters:
    ///   - machine: Built with ``VirtualMachine/restorable(configuration:memory:)``; its memory
    ///     receives the pages.
    ///   - vmUUID: The VM this destination expects (the source's hello must name it).
    public init(machine: VirtualMachine, streams: [MigrationStream], vmUUID: String, handshakeTimeoutMilliseconds: Int32 = 30_000,
                idleTimeoutMilliseconds: UInt64 = 10_000) {
        idleTimeoutNanoseconds = idleTimeoutMilliseconds * 1_000_000
        self.machine = machine
        self.streams = streams
        self.vmUUID = vmUUID
        self.handshakeTimeoutMilliseconds = handshakeTimeoutMilliseconds
        state = Monitor(State(barriers: Array(repeating: nil, count: streams.count)))
    }

    /// Pages received so far (data, zero).
    public var receivedPages: (data: UInt64, zero: UInt64) { state.withLock { ($0.dataPages, $0.zeroPages) } }

    /// True when the source switched to post-copy: pages are still missing.
    public var isPostCopy: Bool { state.withLock { $0.postCopy != nil } }

    /// Checks the source's hello, then receives until the state arrived and is restored.
    ///
    /// - Throws: ``MigrationError/Code/versionMismatch`` or ``MigrationError/Code/refused`` (told
    ///   to the source too), a stream failure, or ``MigrationError/Code/hypervisor`` when the
    ///   state cannot be restored.
    public func receive() throws(MigrationError) -> VirtualMachine {
        guard let control = streams.first else { throw MigrationError(.refused, "a migration needs at least one stream") }
        guard case .hello(let hello)? = try control.receive(timeoutMilliseconds: handshakeTimeoutMilliseconds) else {
            throw MigrationError(.malformed, "the source's first message is not a hello")
        }
        if let refusal = check(hello) {
            try? control.send(.helloReply(MigrationHelloReply(accepted: false, reason: refusal.message, stateFormat: MachineStateCodec.version)))
            throw refusal
        }
        try control.send(.helloReply(MigrationHelloReply(accepted: true, reason: nil, stateFormat: MachineStateCodec.version)))
        for stream in streams {
            do {
                try NativeThread.detach(name: "mig-rx-\(stream.index)") { [self] in receive(on: stream) }
            } catch {
                throw MigrationError(.connection, "cannot start a receiving thread: \(error)")
            }
        }
        var outcome: Result<([UInt8], [PageRange]), MigrationError>?
        while outcome == nil {
            let idle = idleTimeoutNanoseconds
            outcome = state.wait(until: MonotonicClock.nanoseconds + 500_000_000, for: { $0.failure != nil || $0.state != nil }) { s in
                if let failure = s.failure { return .failure(failure) }
                return .success((s.state ?? [], s.needed))
            } ?? nil
            if outcome == nil, MonotonicClock.nanoseconds - state.withLock({ $0.lastActivity }) > idle {
                let error = MigrationError(.timedOut, "nothing arrived from the source for \(idle / 1_000_000_000) s: the source or the link is gone")
                fail(error)
                close()
                outcome = .failure(error)
            }
        }
        guard let outcome else { throw MigrationError(.connection, "the migration ended early") }
        let (bytes, needed): ([UInt8], [PageRange])
        switch outcome {
        case .success(let value): (bytes, needed) = value
        case .failure(let error): throw error
        }
        do {
            let saved = try MachineStateCodec.decode(bytes)
            if !needed.isEmpty { try preparePostCopy(needed) }
            try machine.restore(saved)
        } catch {
            try? control.send(.failed("the destination cannot restore the state: \(error.message)"))
            throw MigrationError(error.code == .incompatibleState ? .versionMismatch : .hypervisor, "restoring the state: \(error.message)")
        }
        try control.send(.stateApplied)
        return machine
    }

    private func check(_ hello: MigrationHello) -> MigrationError? {
        let ours = MachineStateCodec.version
        guard hello.protocolVersion == MigrationProtocol.version else {
            return MigrationError(.versionMismatch, "the source speaks migration protocol \(hello.protocolVersion); this VMM speaks \(MigrationProtocol.version)")
        }
        guard hello.stateFormat.split(separator: ".").first == ours.split(separator: ".").first else {
            return MigrationError(.versionMismatch, "the source writes machine-state format \(hello.stateFormat); this VMM reads \(ours)")
        }
        guard hello.vmUUID == vmUUID else { return MigrationError(.refused, "the source sends VM \(hello.vmUUID); this destination expects \(vmUUID)") }
        let configuration = machine.configuration
        guard hello.vcpuCount == configuration.vcpuCount, hello.memoryBytes == machine.memory.size,
              hello.diskCount == configuration.disks.count else {
            return MigrationError(.refused, "the source's machine (\(hello.vcpuCount) vCPUs, \(hello.memoryBytes) bytes, \(hello.diskCount) disks) "
                                  + "is not the one built here (\(configuration.vcpuCount), \(machine.memory.size), \(configuration.disks.count))")
        }
        guard hello.streamCount == streams.count, hello.pageSize == MigrationProtocol.pageSize else {
            return MigrationError(.refused, "the source uses \(hello.streamCount) streams of \(hello.pageSize)-byte pages; \(streams.count) of \(MigrationProtocol.pageSize) are open here")
        }
        return nil
    }

    private func fail(_ error: MigrationError) {
        state.withLock { s in if s.failure == nil { s.failure = error } }
    }

    /// One stream's messages, applied in order.
    private func receive(on stream: MigrationStream) {
        while true {
            let message: MigrationMessage?
            do { message = try stream.receive(timeoutMilliseconds: nil) } catch {
                fail(error)
                state.withLock { $0.postCopy?.sourceLost(error.message) }
                return
            }
            guard let message else {
                let done = state.withLock { s -> Bool in s.completedStreams >= streams.count || (s.postCopy?.isComplete ?? false) }
                if !done {
                    let error = MigrationError(.connection, "stream \(stream.index) was closed by the source")
                    fail(error)
                    state.withLock { $0.postCopy?.sourceLost(error.message) }
                }
                return
            }
            state.withLock { $0.lastActivity = MonotonicClock.nanoseconds }
            do throws(MigrationError) {
                try apply(message, from: stream)
            } catch {
                fail(error)
                try? stream.send(.failed(error.message))
                return
            }
        }
    }

    private func apply(_ message: MigrationMessage, from stream: MigrationStream) throws(MigrationError) {
        let memory = machine.memory
        let pageSize = UInt64(MigrationProtocol.pageSize)
        switch message {
        case .pages(let address, let count, let bytes):
            let length = UInt64(count) * pageSize
            if let postCopy = state.withLock({ $0.postCopy }) {
                try postCopy.install(bytes, at: address)
            } else {
                guard let target = memory.hostPointer(at: address, count: length) else {
                    throw MigrationError(.malformed, "stream \(stream.index): pages at 0x\(String(address, radix: 16)) + \(count) are outside guest memory")
                }
                bytes.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: Int(length)) }
            }
            state.withLock { $0.dataPages += UInt64(count) }
        case .zeros(let address, let count):
            guard count <= memory.size / pageSize, memory.contains(address, count: count * pageSize) else {
                throw MigrationError(.malformed, "stream \(stream.index): zero range at 0x\(String(address, radix: 16)) + \(count) pages is outside guest memory")
            }
            if let postCopy = state.withLock({ $0.postCopy }) {
                try postCopy.installZeros(at: address, count: count)
            } else {
                do { try memory.discard(address, count: count * pageSize) } catch {
                    throw MigrationError(.hypervisor, "zeroing pages: \(error)")
                }
            }
            state.withLock { $0.zeroPages += count }
        case .barrier(let round):
            state.withLock { s in s.barriers[stream.index] = round }
            try stream.send(.barrierReached(round: round))
        case .state(let bytes):
            guard stream.index == 0 else { throw MigrationError(.malformed, "stream \(stream.index): the state must come on stream 0") }
            state.withLock { $0.state = bytes }
        case .neededRanges(let ranges):
            guard stream.index == 0 else { throw MigrationError(.malformed, "stream \(stream.index): needed ranges must come on stream 0") }
            for range in ranges where !memory.contains(range.address, count: range.count * pageSize) {
                throw MigrationError(.malformed, "needed range 0x\(String(range.address, radix: 16)) + \(range.count) pages is outside guest memory")
            }
            state.withLock { $0.needed += ranges }
        case .complete:
            state.withLock { $0.completedStreams += 1 }
        case .abort(let reason):
            throw MigrationError(.cancelled, "the source gave up: \(reason)")
        default:
            throw MigrationError(.malformed, "stream \(stream.index): a source does not send message 0x\(String(message.type, radix: 16))")
        }
    }

    // MARK: Post-copy

    /// Makes the pages the source still owns missing, so that touching one faults.
    private func preparePostCopy(_ needed: [PageRange]) throws(HypervisorError) {
        let pages = try PostCopyPages(memory: machine.memory, needed: needed, request: { [streams] address in
            try? streams[0].send(.pageRequest(address: address))
        }, done: { [streams] in
            try? streams[0].send(.postCopyDone)
        })
        state.withLock { $0.postCopy = pages }
    }

    /// Post-copy: starts resolving the guest's faults (call just before running the machine).
    public func startPostCopy() throws(MigrationError) {
        guard let pages = state.withLock({ $0.postCopy }) else { return }
        do { try pages.start() } catch { throw MigrationError(.hypervisor, "post-copy: \(error)") }
    }

    /// Waits until post-copy has every page (true) or the source was lost (false, with why).
    public func waitForPostCopy() -> (complete: Bool, reason: String?) {
        guard let pages = state.withLock({ $0.postCopy }) else { return (true, nil) }
        return pages.waitUntilComplete()
    }

    /// Ends the migration's streams (after completion, or to abandon it).
    public func close() {
        for stream in streams { stream.shutdown() }
    }
}
