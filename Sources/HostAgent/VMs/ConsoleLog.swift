public import VMFSCore
public import SystemSupport

/// A VM's serial console as the agent keeps it: appended to `NAME.log` on the volume (capped: at
/// ``fileCapacity`` the file starts over with a line saying so, so a chatty or hostile guest cannot
/// fill the datastore) and the newest ``memoryCapacity`` bytes in memory for clients that follow it.
public final class ConsoleLog: Sendable {
    public static let memoryCapacity = 256 << 10

    private struct State {
        var recent: [UInt8] = []
        /// Bytes ever appended (readers resume from a position in this count).
        var total: UInt64 = 0
        var fileOffset: UInt64
        var closed = false
    }

    private let handle: FileHandle
    public let fileCapacity: UInt64
    private let state: Monitor<State>

    /// Appends to `handle` (the VM's `.log`, open read-write) from its current end.
    public init(handle: FileHandle, fileCapacity: UInt64 = 16 << 20) {
        self.handle = handle
        self.fileCapacity = fileCapacity
        state = Monitor(State(fileOffset: handle.size))
    }

    /// Adds console output (or an agent note).
    public func append(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        state.withLock { s in
            s.recent.append(contentsOf: bytes)
            if s.recent.count > Self.memoryCapacity { s.recent.removeFirst(s.recent.count - Self.memoryCapacity) }
            s.total += UInt64(bytes.count)
            if s.fileOffset + UInt64(bytes.count) > fileCapacity {
                let note = Array("--- log restarted: it reached \(fileCapacity) bytes ---\n".utf8)
                if (try? handle.truncate(to: 0)) != nil, (try? handle.write(bytes: note, at: 0)) != nil {
                    s.fileOffset = UInt64(note.count)
                }
            }
            if (try? handle.write(bytes: bytes, at: s.fileOffset)) != nil { s.fileOffset += UInt64(bytes.count) }
        }
    }

    /// Writes a line of the agent's own (start, stop) into the log.
    public func note(_ line: String) { append(Array("--- \(line) ---\n".utf8)) }

    /// The position after the newest byte.
    public var position: UInt64 { state.withLock { $0.total } }

    /// The bytes after `position` that are still in memory, and the new position. When `position`
    /// is older than memory holds, output starts at the oldest byte kept.
    public func read(after position: UInt64) -> (bytes: [UInt8], position: UInt64) {
        state.withLock { s in Self.slice(s, after: position) }
    }

    /// Waits up to the timeout for bytes after `position`; returns them (maybe none) and the new
    /// position, or nil once the log is closed and nothing is left.
    public func wait(after position: UInt64, timeoutNanoseconds: UInt64) -> (bytes: [UInt8], position: UInt64)? {
        let deadline = MonotonicClock.nanoseconds + timeoutNanoseconds
        let result = state.wait(until: deadline, for: { $0.total > position || $0.closed }) { s -> (bytes: [UInt8], position: UInt64)? in
            if s.total <= position && s.closed { return nil }
            return Self.slice(s, after: position)
        }
        return result ?? (bytes: [], position: position)
    }

    private static func slice(_ s: State, after position: UInt64) -> (bytes: [UInt8], position: UInt64) {
        let oldest = s.total - UInt64(s.recent.count)
        let start = max(position, oldest)
        guard start < s.total else { return ([], s.total) }
        return (Array(s.recent[Int(start - oldest)...]), s.total)
    }

    /// Ends the log: followers get what is left, then the end.
    public func close() {
        state.withLock { $0.closed = true }
        try? handle.sync()
    }
}
