public import SystemSupport

/// Runs long operations as tasks: each gets an identifier at once, runs on its own thread, and
/// reports progress and its outcome. The newest ``capacity`` tasks are kept.
public final class TaskManager: Sendable {
    public static let capacity = 1000

    private struct State {
        var tasks: [String: AgentTask] = [:]
        var order: [String] = []
        var next = 1
    }

    private let state = Monitor(State())

    public init() {}

    /// A handle the work uses to report progress.
    public struct Progress: Sendable {
        let manager: TaskManager
        public let id: String
        /// Sets the progress (0 – 100).
        public func update(_ percent: Int) {
            manager.state.withLock { s in s.tasks[id]?.progress = min(100, max(0, percent)) }
        }
    }

    /// Starts `work` as a task; returns the task as queued.
    public func start(operation: String, target: String?,
                      _ work: @escaping @Sendable (Progress) throws(AgentError) -> String?) -> AgentTask {
        let task = state.withLock { s -> AgentTask in
            let id = "task-\(s.next)"
            s.next += 1
            let task = AgentTask(id: id, operation: operation, target: target, state: .queued, progress: 0,
                                 queuedNanoseconds: MonotonicClock.wallNanoseconds)
            s.tasks[id] = task
            s.order.append(id)
            if s.order.count > Self.capacity {
                let dropped = s.order.removeFirst()
                s.tasks[dropped] = nil
            }
            return task
        }
        let progress = Progress(manager: self, id: task.id)
        do {
            try NativeThread.detach(name: "hostd-task") { [self] in
                state.withLock { s in
                    s.tasks[task.id]?.state = .running
                    s.tasks[task.id]?.startedNanoseconds = MonotonicClock.wallNanoseconds
                }
                let outcome: Result<String?, AgentError>
                do throws(AgentError) { outcome = .success(try work(progress)) } catch { outcome = .failure(error) }
                finish(task.id, outcome)
            }
        } catch {
            finish(task.id, .failure(AgentError(.failed, "cannot start a thread for the task: \(error)")))
        }
        return task
    }

    private func finish(_ id: String, _ outcome: Result<String?, AgentError>) {
        state.withLock { s in
            s.tasks[id]?.finishedNanoseconds = MonotonicClock.wallNanoseconds
            switch outcome {
            case .success(let result):
                s.tasks[id]?.state = .success
                s.tasks[id]?.progress = 100
                s.tasks[id]?.result = result
            case .failure(let error):
                s.tasks[id]?.state = .error
                s.tasks[id]?.error = error
            }
        }
    }

    /// The task `id`, or nil.
    public func task(_ id: String) -> AgentTask? { state.withLock { $0.tasks[id] } }

    /// Every kept task, newest first.
    public var all: [AgentTask] { state.withLock { s in s.order.reversed().compactMap { s.tasks[$0] } } }

    /// Waits until task `id` finished or the timeout passed; returns it as it is then.
    public func wait(_ id: String, timeoutNanoseconds: UInt64) -> AgentTask? {
        let deadline = MonotonicClock.nanoseconds + timeoutNanoseconds
        return state.wait(until: deadline, for: { $0.tasks[id]?.isFinished ?? true }) { $0.tasks[id] } ?? state.withLock { $0.tasks[id] }
    }
}
