public import SystemSupport
internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// The host's event log: numbered events kept in memory (the newest ``memoryCapacity``) and
/// appended to `events.jsonl` in the state directory, so the numbering and history survive agent
/// restarts. Readers poll with ``events(after:limit:)`` or wait with ``wait(after:timeoutNanoseconds:)``.
public final class EventLog: Sendable {
    public static let memoryCapacity = 10_000
    /// The file is rotated (to `events.jsonl.1`) past this size.
    public static let fileLimit = 8 << 20

    private struct State {
        var events: [HostEvent] = []
        var lastSequence: UInt64 = 0
    }

    private let state = Monitor(State())
    private let path: String?

    /// Opens (or starts) the log at `path`; nil keeps it in memory only.
    public init(path: String?) {
        self.path = path
        guard let path else { return }
        let loaded = Self.load(path: path + ".1") + Self.load(path: path)
        state.withLock { s in
            s.events = Array(loaded.suffix(Self.memoryCapacity))
            s.lastSequence = loaded.last?.sequence ?? 0
        }
    }

    private static func load(path: String) -> [HostEvent] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(HostEvent.self, from: Data($0)) }
    }

    /// The number of the newest event (0 when there is none).
    public var lastSequence: UInt64 { state.withLock { $0.lastSequence } }

    /// Records `event` (numbered and timed here) and returns it.
    @discardableResult
    public func record(_ event: HostEvent) -> HostEvent {
        let recorded = state.withLock { s -> HostEvent in
            var numbered = event
            s.lastSequence += 1
            numbered.sequence = s.lastSequence
            numbered.timeNanoseconds = MonotonicClock.wallNanoseconds
            s.events.append(numbered)
            if s.events.count > Self.memoryCapacity { s.events.removeFirst(s.events.count - Self.memoryCapacity) }
            append(numbered)
            return numbered
        }
        return recorded
    }

    /// Appends one line (called under the lock, so lines keep their order).
    private func append(_ event: HostEvent) {
        guard let path, var line = try? JSONEncoder().encode(event) else { return }
        line.append(UInt8(ascii: "\n"))
        var info = stat()
        if stat(path, &info) == 0, Int(info.st_size) + line.count > Self.fileLimit {
            rename(path, path + ".1")
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Events numbered after `sequence`, oldest first, at most `limit`.
    public func events(after sequence: UInt64, limit: Int = 1000) -> [HostEvent] {
        state.withLock { s in Array(s.events.lazy.filter { $0.sequence > sequence }.prefix(limit)) }
    }

    /// Waits until an event after `sequence` exists (or the timeout passes); returns the new ones.
    public func wait(after sequence: UInt64, timeoutNanoseconds: UInt64, limit: Int = 1000) -> [HostEvent] {
        let deadline = MonotonicClock.nanoseconds + timeoutNanoseconds
        return state.wait(until: deadline, for: { $0.lastSequence > sequence }) { s in
            Array(s.events.lazy.filter { $0.sequence > sequence }.prefix(limit))
        } ?? []
    }
}
