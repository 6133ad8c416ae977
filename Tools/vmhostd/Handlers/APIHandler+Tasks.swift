import Foundation
import HostAgent
import HostAgentAPI
import OpenAPIRuntime

extension APIHandler {
    func listTasks(_ input: Operations.ListTasks.Input) async throws -> Operations.ListTasks.Output {
        .ok(.init(body: .json(agent.context.tasks.all.map(Conversions.task))))
    }

    func getTask(_ input: Operations.GetTask.Input) async throws -> Operations.GetTask.Output {
        let id = input.path.task
        let wait = UInt64(try Validation.within(input.query.waitSeconds, 0...300, field: "waitSeconds") ?? 0)
        let deadline = ContinuousClock.now + .seconds(Int64(wait))
        while true {
            guard let task = agent.context.tasks.task(id) else { throw AgentError(.notFound, "no task '\(id)'", field: "task") }
            if task.isFinished || ContinuousClock.now >= deadline || shutdown.isStopping {
                return .ok(.init(body: .json(Conversions.task(task))))
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Events as JSON Lines; with follow the stream stays open and new events are sent as they happen.
    func listEvents(_ input: Operations.ListEvents.Input) async throws -> Operations.ListEvents.Output {
        let events = agent.context.events
        let since = try Validation.nonNegative(input.query.since, field: "since") ?? 0
        let limit = try Validation.within(input.query.limit, 1...10_000, field: "limit") ?? 1000
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        func lines(_ batch: [HostEvent]) -> [UInt8] {
            batch.reduce(into: [UInt8]()) { bytes, event in
                if let data = try? encoder.encode(Conversions.event(event)) { bytes += data + [0x0A] }
            }
        }
        guard input.query.follow == true else {
            return .ok(.init(body: .applicationJsonl(HTTPBody(lines(events.events(after: since, limit: limit))))))
        }
        let shutdown = shutdown
        let stream = AsyncThrowingStream<ArraySlice<UInt8>, any Error> { continuation in
            let follower = Task {
                var position = since
                while !Task.isCancelled && !shutdown.isStopping {
                    let batch = events.events(after: position, limit: limit)
                    if let last = batch.last {
                        position = last.sequence
                        continuation.yield(lines(batch)[...])
                    } else {
                        try? await Task.sleep(for: .milliseconds(20))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in follower.cancel() }
        }
        return .ok(.init(body: .applicationJsonl(HTTPBody(stream, length: .unknown, iterationBehavior: .single))))
    }
}
