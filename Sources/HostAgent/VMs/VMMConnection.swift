public import VMXProtocol
internal import SystemSupport

/// The agent's end of one VMM's control connection: sends requests, and on its own thread
/// receives everything the VMM says, handing state changes, console output and markers to the
/// VM and keeping the latest reply for whoever waits for one.
final class VMMConnection: Sendable {
    let channel: ControlChannel

    private struct State {
        var replies: [ControlMessage] = []
        var closed = false
    }

    private let state = Monitor(State())
    private let onMessage: @Sendable (ControlMessage) -> Void
    private let onClose: @Sendable () -> Void

    /// Connects to the VMM at `socketPath`, retrying while it starts (up to `timeoutNanoseconds`).
    static func connect(socketPath: String, timeoutNanoseconds: UInt64) throws(AgentError) -> ControlChannel {
        let deadline = MonotonicClock.nanoseconds + timeoutNanoseconds
        while true {
            do { return try ControlChannel.connect(path: socketPath) } catch {
                if MonotonicClock.nanoseconds >= deadline {
                    throw AgentError(.failed, "the VMM's control socket \(socketPath) did not accept a connection: \(error)")
                }
                MonotonicClock.sleep(milliseconds: 5)
            }
        }
    }

    init(channel: ControlChannel, onMessage: @escaping @Sendable (ControlMessage) -> Void,
         onClose: @escaping @Sendable () -> Void) throws(AgentError) {
        self.channel = channel
        self.onMessage = onMessage
        self.onClose = onClose
        do {
            try NativeThread.detach(name: "hostd-vmm-rx") { [self] in receive() }
        } catch {
            throw AgentError(.failed, "cannot start a thread for the VMM connection: \(error)")
        }
    }

    private func receive() {
        while true {
            let received: ReceivedMessage?
            do { received = try channel.receive() } catch where error.code == .malformed { continue } catch { received = nil }
            guard let received else { break }
            switch received.message {
            case .helloReply, .configured, .status:
                state.withLock { $0.replies.append(received.message) }
            case .error:
                state.withLock { $0.replies.append(received.message) }
                onMessage(received.message)  // a refused request nobody waits for (migrateOut) still ends its operation
            case .stateChanged, .consoleOutput, .marker, .migrationProgress, .migrationReady, .migrationEnded, .guestHeartbeat, .networkEvent:
                onMessage(received.message)
            default:
                break  // requests are the agent's to send; a VMM sending one is ignored
            }
        }
        state.withLock { $0.closed = true }
        onClose()
    }

    /// Sends `request` and waits for the reply `accept` picks (an `error` reply throws).
    func request(_ request: ControlMessage, descriptors: [Int32] = [], timeoutNanoseconds: UInt64,
                 accept: @escaping @Sendable (ControlMessage) -> Bool) throws(AgentError) -> ControlMessage {
        state.withLock { $0.replies.removeAll() }
        do { try channel.send(request, descriptors: descriptors) } catch {
            throw AgentError(.failed, "cannot send \(request.type) to the VMM: \(error)")
        }
        let deadline = MonotonicClock.nanoseconds + timeoutNanoseconds
        let reply = state.wait(until: deadline, for: { s in
            s.closed || s.replies.contains { accept($0) || Self.isError($0, for: request.type) }
        }) { s -> ControlMessage? in
            guard let index = s.replies.firstIndex(where: { accept($0) || Self.isError($0, for: request.type) }) else { return nil }
            return s.replies.remove(at: index)
        }
        switch reply {
        case nil:
            throw AgentError(.failed, "the VMM did not answer message 0x\(String(request.type, radix: 16)) in time")
        case .some(nil):
            throw AgentError(.failed, "the VMM closed its control connection")
        case .some(.some(.error(let error))):
            throw AgentError(.failed, "the VMM refused: \(error.message)")
        case .some(.some(let message)):
            return message
        }
    }

    private static func isError(_ message: ControlMessage, for type: UInt16) -> Bool {
        if case .error(let reply) = message { return reply.inReplyTo == type || reply.inReplyTo == 0 }
        return false
    }

    /// Sends a message that has no reply.
    func send(_ message: ControlMessage, descriptors: [Int32] = []) throws(AgentError) {
        do { try channel.send(message, descriptors: descriptors) } catch {
            throw AgentError(.failed, "cannot send to the VMM: \(error)")
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }
}
