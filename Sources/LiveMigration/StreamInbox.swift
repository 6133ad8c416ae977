internal import SystemSupport

/// What the peer sent back on the streams, gathered by one receiving thread per stream, for the
/// side that waits for it (barrier acknowledgements, the state, page requests, failures).
final class StreamInbox: Sendable {
    struct State {
        /// The highest barrier round each stream acknowledged (or reached).
        var barriers: [UInt64?]
        var messages: [MigrationMessage] = []
        /// Why a stream stopped (nil while all run).
        var failure: MigrationError?
        var closedStreams = 0
    }

    let state: Monitor<State>

    init(streamCount: Int) {
        state = Monitor(State(barriers: Array(repeating: nil, count: streamCount)))
    }

    /// Starts a receiving thread per stream; `handle` sees every message first and returns false
    /// when it consumed it (else it is kept for ``waitFor(_:deadline:)``).
    func start(_ streams: [MigrationStream], handle: @escaping @Sendable (Int, MigrationMessage) -> Bool = { _, _ in true }) throws(MigrationError) {
        for stream in streams {
            do {
                try NativeThread.detach(name: "mig-rx-\(stream.index)") { [self] in receive(stream, handle: handle) }
            } catch {
                throw MigrationError(.connection, "cannot start a receiving thread: \(error)")
            }
        }
    }

    private func receive(_ stream: MigrationStream, handle: @Sendable (Int, MigrationMessage) -> Bool) {
        while true {
            let message: MigrationMessage?
            do { message = try stream.receive(timeoutMilliseconds: nil) } catch {
                fail(error)
                return
            }
            guard let message else {
                state.withLock { $0.closedStreams += 1 }
                fail(MigrationError(.connection, "stream \(stream.index) was closed by the peer"))
                return
            }
            switch message {
            case .barrierReached(let round):
                state.withLock { s in s.barriers[stream.index] = max(s.barriers[stream.index] ?? 0, round) }
            case .failed(let text), .abort(let text):
                fail(MigrationError(.refused, "the peer gave up: \(text)"))
            default:
                if handle(stream.index, message) { state.withLock { $0.messages.append(message) } }
            }
        }
    }

    func fail(_ error: MigrationError) {
        state.withLock { s in if s.failure == nil { s.failure = error } }
    }

    var failure: MigrationError? { state.withLock { $0.failure } }

    /// Waits until every stream acknowledged barrier `round`.
    func waitForBarrier(_ round: UInt64, deadline: UInt64) throws(MigrationError) {
        let outcome = state.wait(until: deadline, for: { s in
            s.failure != nil || s.barriers.allSatisfy { ($0 ?? 0) >= round && $0 != nil }
        }) { s -> MigrationError? in s.failure }
        switch outcome {
        case nil: throw MigrationError(.timedOut, "the destination did not acknowledge round \(round) in time")
        case .some(let failure?): throw failure
        case .some(nil): return
        }
    }

    /// Waits for (and takes) the first kept message `accept` picks.
    func waitFor(_ what: String, deadline: UInt64?, _ accept: @escaping (MigrationMessage) -> Bool) throws(MigrationError) -> MigrationMessage {
        let outcome = state.wait(until: deadline, for: { s in s.failure != nil || s.messages.contains(where: accept) }) {
            s -> Result<MigrationMessage, MigrationError> in
            if let index = s.messages.firstIndex(where: accept) { return .success(s.messages.remove(at: index)) }
            return .failure(s.failure ?? MigrationError(.connection, "no \(what)"))
        }
        switch outcome {
        case nil: throw MigrationError(.timedOut, "no \(what) arrived in time")
        case .some(.success(let message)): return message
        case .some(.failure(let error)): throw error
        }
    }
}
