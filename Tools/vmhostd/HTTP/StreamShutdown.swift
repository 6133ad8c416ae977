import ServiceLifecycle
import Synchronization

/// Ends the API's open-ended streams (followed console and events) when the agent begins its
/// graceful shutdown: the HTTP servers wait for requests in flight, and a followed stream would
/// otherwise keep them, and the agent, up forever.
final class StreamShutdown: Service {
    private let stopping = Atomic<Bool>(false)

    /// True once shutdown began: followers finish their streams.
    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func run() async throws {
        try? await gracefulShutdown()
        stopping.store(true, ordering: .releasing)
    }
}
