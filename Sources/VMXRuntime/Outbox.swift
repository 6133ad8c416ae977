internal import Hypervisor
internal import SystemSupport
internal import VMXProtocol

/// Messages from the VMM to the agent, sent by one thread so that vCPU threads (console output,
/// markers) never block on the socket. While no agent is connected, console output is kept up
/// to ``consoleCapacity`` bytes (the oldest is dropped) and other messages up to ``messageCapacity``.
final class Outbox: Sendable {
    static let consoleCapacity = 64 << 10
    static let messageCapacity = 4096

    private struct State {
        var channel: ControlChannel?
        var console: [UInt8] = []
        var messages: [ControlMessage] = []
        /// A batch taken from the queues is being sent (the queues look empty meanwhile).
        var sending = false
        var closed = false
    }

    private let state = Monitor(State())

    init() throws(SystemError) {
        try NativeThread.detach(name: "vmx-outbox") { [self] in run() }
    }

    /// Sends to `channel` from now on (nil: hold messages until the next agent connects).
    func connect(_ channel: ControlChannel?) { state.withLock { $0.channel = channel } }

    func appendConsole(_ bytes: [UInt8]) {
        state.withLock { s in
            s.console.append(contentsOf: bytes)
            if s.console.count > Self.consoleCapacity { s.console.removeFirst(s.console.count - Self.consoleCapacity) }
        }
    }

    func send(_ message: ControlMessage) {
        state.withLock { s in
            if s.messages.count >= Self.messageCapacity { s.messages.removeFirst() }
            s.messages.append(message)
        }
    }

    /// Sends what is queued, including a batch being sent now (waiting up to
    /// `timeoutNanoseconds`), then stops the thread. The VMM's last message (its stop report)
    /// is sent before it exits: a process exiting in the middle of a batch loses it.
    func close(timeoutNanoseconds: UInt64) {
        _ = state.wait(until: MonotonicClock.nanoseconds + timeoutNanoseconds,
                       for: { $0.channel == nil || ($0.console.isEmpty && $0.messages.isEmpty && !$0.sending) }) { _ in true }
        state.withLock { $0.closed = true }
    }

    private func run() {
        while true {
            let next = state.wait(for: { $0.closed || ($0.channel != nil && (!$0.console.isEmpty || !$0.messages.isEmpty)) }) {
                s -> (ControlChannel, [ControlMessage])? in
                guard !s.closed, let channel = s.channel else { return nil }
                var batch: [ControlMessage] = []
                var console = s.console[...]
                while !console.isEmpty {
                    let chunk = console.prefix(VMXProtocol.maximumPayload)
                    batch.append(.consoleOutput(Array(chunk)))
                    console = console.dropFirst(chunk.count)
                }
                batch += s.messages
                s.console.removeAll()
                s.messages.removeAll()
                s.sending = true
                return (channel, batch)
            }
            guard let (channel, batch) = next ?? nil else { return }
            var failed = false
            for message in batch {
                do { try channel.send(message) } catch {
                    failed = true
                    break
                }
            }
            state.withLock { s in
                s.sending = false
                if failed && s.channel === channel { s.channel = nil }
            }
        }
    }
}

/// The guest's serial console, relayed to the agent.
final class AgentConsole: ConsoleSink {
    let outbox: Outbox
    init(outbox: Outbox) { self.outbox = outbox }
    func write(_ bytes: [UInt8]) { outbox.appendConsole(bytes) }
}
