/// A long operation (power-on, create, …) as clients see it: queued → running → success or error.
public struct AgentTask: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable { case queued, running, success, error }

    /// The task's identifier (`task-N`).
    public var id: String
    /// What it does, e.g. `powerOn`.
    public var operation: String
    /// The VM (UUID) or volume it works on.
    public var target: String?
    public var state: State
    /// 0 – 100.
    public var progress: Int
    public var queuedNanoseconds: Int64
    public var startedNanoseconds: Int64?
    public var finishedNanoseconds: Int64?
    /// What went wrong, for ``State/error``.
    public var error: AgentError?
    /// What it produced (e.g. the VM's UUID), for ``State/success``.
    public var result: String?

    public var isFinished: Bool { state == .success || state == .error }
}
