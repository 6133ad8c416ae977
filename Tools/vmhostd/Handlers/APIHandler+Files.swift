import Foundation
import HostAgent
import HostAgentAPI
import NIOPosix
import OpenAPIRuntime
import VMFSCore

extension APIHandler {
    func listFiles(_ input: Operations.ListFiles.Input) async throws -> Operations.ListFiles.Output {
        let name = input.path.volume
        let files = try await blocking { [agent] () throws(AgentError) in try agent.files(on: name) }
        return .ok(.init(body: .json(files.map(Conversions.file))))
    }

    func createFile(_ input: Operations.CreateFile.Input) async throws -> Operations.CreateFile.Output {
        let name = input.path.volume
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let size = try Validation.nonNegative(request.size, field: "size")
        let status = try await blocking { [agent] () throws(AgentError) in
            try agent.createFile(on: name, file: request.name, size: size, thick: request.thick ?? false)
        }
        return .created(.init(body: .json(Conversions.file(status))))
    }

    func getFileStatus(_ input: Operations.GetFileStatus.Input) async throws -> Operations.GetFileStatus.Output {
        let (name, file) = (input.path.volume, input.path.file)
        let (status, extents) = try await blocking { [agent] () throws(AgentError) in try agent.fileDetail(on: name, file: file) }
        return .ok(.init(body: .json(.init(file: Conversions.file(status),
                                            extents: extents.map { .init(offset: Int64(clamping: $0.offset), length: Int64(clamping: $0.length)) }))))
    }

    /// Streams the file (or a range) in 1 MiB pieces read on the blocking pool.
    func readFile(_ input: Operations.ReadFile.Input) async throws -> Operations.ReadFile.Output {
        let (name, file) = (input.path.volume, input.path.file)
        let handle = try await blocking { [agent] () throws(AgentError) in try agent.openForReading(on: name, file: file) }
        let start: UInt64
        let requested: UInt64?
        do {
            start = try Validation.nonNegative(input.query.offset, field: "offset") ?? 0
            requested = try Validation.nonNegative(input.query.length, field: "length")
        } catch {
            try? handle.close()
            throw error
        }
        let size = handle.size
        let end = requested.map { start > size ? size : min(size, start + min($0, size - start)) } ?? size
        let length = end > start ? end - start : 0
        let pool = blockingPool
        let stream = AsyncThrowingStream<ArraySlice<UInt8>, any Error> { continuation in
            let reader = Task {
                defer { try? handle.close() }
                var position = start
                while position < end, !Task.isCancelled {
                    let count = Int(min(1 << 20, end - position))
                    do {
                        let at = position
                        let bytes = try await pool.runIfActive { () throws -> [UInt8] in try handle.read(count: count, at: at) }
                        if bytes.isEmpty { break }
                        continuation.yield(bytes[...])
                        position += UInt64(bytes.count)
                    } catch {
                        continuation.finish(throwing: error)
                        return
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in reader.cancel() }
        }
        return .ok(.init(body: .binary(HTTPBody(stream, length: .known(Int64(clamping: length)), iterationBehavior: .single))))
    }

    /// Writes the body in 1 MiB pieces; a replacement is renamed into place only once complete.
    func writeFile(_ input: Operations.WriteFile.Input) async throws -> Operations.WriteFile.Output {
        let (name, file) = (input.path.volume, input.path.file)
        guard case .binary(let body) = input.body else { throw AgentError(.invalidArgument, "expected an octet-stream body") }
        let replace = input.query.replace ?? false
        let offset = try Validation.nonNegative(input.query.offset, field: "offset")
        let finalSize = try Validation.nonNegative(input.query.size, field: "size")
        let writer = try await blocking { [agent] () throws(AgentError) in
            try agent.openForWriting(on: name, file: file, replace: replace, offset: offset)
        }
        var pending: [UInt8] = []
        pending.reserveCapacity(1 << 20)
        do {
            for try await chunk in body {
                pending.append(contentsOf: chunk)
                if pending.count >= 1 << 20 {
                    let piece = pending
                    pending.removeAll(keepingCapacity: true)
                    try await blocking { () throws(AgentError) in try writer.write(piece) }
                }
            }
            let piece = pending
            if !piece.isEmpty { try await blocking { () throws(AgentError) in try writer.write(piece) } }
            let status = try await blocking { () throws(AgentError) in try writer.finish(size: finalSize) }
            return .ok(.init(body: .json(Conversions.file(status))))
        } catch {
            writer.abandon()
            throw error
        }
    }

    func deleteFile(_ input: Operations.DeleteFile.Input) async throws -> Operations.DeleteFile.Output {
        let (name, file) = (input.path.volume, input.path.file)
        try await blocking { [agent] () throws(AgentError) in try agent.removeFile(on: name, file: file) }
        return .noContent(.init())
    }

    func renameFile(_ input: Operations.RenameFile.Input) async throws -> Operations.RenameFile.Output {
        let (name, file) = (input.path.volume, input.path.file)
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let mode: RenameMode = switch request.mode {
        case .noReplace?: .noReplace
        case .exchange?: .exchange
        case .replace?, nil: .replace
        }
        let status = try await blocking { [agent] () throws(AgentError) in
            try agent.renameFile(on: name, file: file, to: request.target, mode: mode)
        }
        return .ok(.init(body: .json(Conversions.file(status))))
    }
}
