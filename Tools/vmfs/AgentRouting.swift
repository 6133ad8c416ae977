import ArgumentParser
import Glibc
import HostAgentAPI
import HostAgentClient
import OpenAPIRuntime
import SystemSupport
import VMFSCore
import VMFSToolSupport

/// Commands that join the volume send their work to this host's agent when it holds the volume
/// (it is the host's only member): the agent is found from the note in the volume's local host lock.
enum AgentRouting {
    /// Runs `body` with the agent's client and the volume's datastore name when this host's agent
    /// holds the volume on `device`; returns false (doing nothing) when none does.
    static func run(device: String, host: HostIdentityOptions, tool: String,
                    _ body: (Client, String) async throws -> Void) async throws -> Bool {
        let identity = HostIdentity.local(override: host.hostID ?? getenv("VMFS_HOST_ID").map { String(cString: $0) })
        guard let route = AgentRoute.forVolume(device: device, host: identity) else { return false }
        let connection: AgentConnection
        do { connection = try AgentConnection(route.endpoint) } catch { throw ToolOutput.failure(tool, error) }
        do {
            try await body(connection.client, route.datastore)
            await connection.shutdown()
            return true
        } catch let error as ExitCode {
            await connection.shutdown()
            throw error
        } catch {
            await connection.shutdown()
            throw ToolOutput.failure(tool, AgentClientError("through the host agent (\(route.endpoint)): \(describe(error))"))
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? ClientError, let cause = error.underlyingError as? AgentClientError { return cause.description }
        if let error = error as? ClientError { return "\(error.underlyingError)" }
        return "\(error)"
    }

    /// Copies `source` to `name` through the agent: the data (zero runs left out) into a
    /// temporary file at its offsets, then its size, then one rename into place. The source is read
    /// on a thread of its own, at most 16 MiB ahead of what the agent has written.
    static func put(_ source: LocalSource, as name: String, thick: Bool, replace: Bool, client: Client, datastore: String) async throws {
        let temporary = ".\(name.prefix(200)).vmfs-put-\(getpid())"
        let pieces = PieceQueue(capacity: 16)
        let reader = try NativeThread(name: "vmfs-put-read") {
            do {
                let size = try source.copyData { offset, bytes in pieces.push(.data(offset, Array(bytes))) }
                pieces.push(.end(size))
            } catch {
                pieces.push(.failed("\(error)"))
            }
        }
        defer {
            pieces.cancel()
            reader.join()
        }
        do {
            if thick && source.statedSize > 0 {
                _ = try await client.createFile(path: .init(volume: datastore),
                                                body: .json(.init(name: temporary, size: Int64(clamping: source.statedSize), thick: true))).created
            }
            loop: while true {
                guard let piece = pieces.pop() else {
                    try await Task.sleep(for: .milliseconds(1))
                    continue
                }
                switch piece {
                case .data(let offset, let bytes):
                    _ = try await client.writeFile(path: .init(volume: datastore, file: temporary), query: .init(offset: Int64(clamping: offset)),
                                                   body: .binary(HTTPBody(bytes))).ok
                case .end(let size):
                    _ = try await client.writeFile(path: .init(volume: datastore, file: temporary),
                                                   query: .init(offset: 0, size: Int64(clamping: size)), body: .binary(HTTPBody())).ok
                    break loop
                case .failed(let message):
                    throw AgentClientError(message)
                }
            }
            _ = try await client.renameFile(path: .init(volume: datastore, file: temporary),
                                            body: .json(.init(target: name, mode: replace ? .replace : .noReplace))).ok
        } catch {
            _ = try? await client.deleteFile(path: .init(volume: datastore, file: temporary))
            throw error
        }
    }

    /// Copies `name` to a local file through the agent: its allocated extents only.
    static func get(_ name: String, to local: String, client: Client, datastore: String) async throws {
        let detail = try await client.getFileStatus(path: .init(volume: datastore, file: name)).ok.body.json
        let destination = try LocalDestination(path: local)
        try destination.setSize(UInt64(max(0, detail.file.size)))
        for extent in detail.extents {
            var position = extent.offset
            let end = extent.offset + extent.length
            while position < end {
                let length = min(Int64(8 << 20), end - position)
                let body = try await client.readFile(path: .init(volume: datastore, file: name),
                                                     query: .init(offset: position, length: length)).ok.body.binary
                var at = UInt64(position)
                for try await chunk in body {
                    try chunk.withUnsafeBytes { try destination.write($0, at: at) }
                    at += UInt64(chunk.count)
                }
                guard at > UInt64(position) else { throw AgentClientError("'\(name)' ended early at \(position)") }
                position = Int64(at)
            }
        }
        try destination.commit(mode: UInt32(detail.file.mode))
    }
}

/// Pieces read by a thread for an async writer, at most `capacity` waiting (the reader blocks).
final class PieceQueue: Sendable {
    enum Piece: Sendable {
        case data(UInt64, [UInt8])
        case end(UInt64)
        case failed(String)
    }

    private struct State {
        var pieces: [Piece] = []
        var cancelled = false
    }

    private let state = Monitor(State())
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Waits for room (or a cancel), then queues `piece`.
    func push(_ piece: Piece) {
        _ = state.wait(for: { $0.pieces.count < self.capacity || $0.cancelled }) { s in
            if !s.cancelled { s.pieces.append(piece) }
        }
    }

    /// The oldest piece, or nil when none is waiting.
    func pop() -> Piece? {
        state.withLock { s in s.pieces.isEmpty ? nil : s.pieces.removeFirst() }
    }

    /// Lets a blocked reader go (its later pieces are dropped).
    func cancel() { state.withLock { $0.cancelled = true } }
}
