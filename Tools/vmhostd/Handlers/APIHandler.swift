import Foundation
import HostAgent
import HostAgentAPI
import NIOPosix
import OpenAPIRuntime

/// The agent's API (`Sources/HostAgentAPI/openapi.yaml`) over ``HostAgent``. Operations that do
/// volume I/O run on a pool of blocking threads, never on the event loops; waits (tasks, events,
/// console) poll without holding a thread. Errors are thrown as ``AgentError`` and turned into
/// JSON error responses by ``APIErrorMiddleware``.
struct APIHandler: APIProtocol {
    let agent: HostAgent
    let blockingPool: NIOThreadPool
    let metrics: AgentMetrics
    let shutdown: StreamShutdown

    /// Runs volume I/O off the event loop.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws(AgentError) -> T) async throws -> T {
        try await blockingPool.runIfActive { () throws -> T in try body() }
    }
}

extension Date {
    init(wallNanoseconds: Int64) { self.init(timeIntervalSince1970: Double(wallNanoseconds) / 1e9) }
}
