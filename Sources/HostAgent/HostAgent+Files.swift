public import VMFSCore
internal import SystemSupport

/// The volume's files through the agent: what `vmfs` commands do when the agent holds the volume.
extension HostAgent {
    /// The client files opened through the API belong to (each request is a command).
    static let commandClient = FileClient("a vmfs command")

    public func files(on name: String) throws(AgentError) -> [FileStatus] {
        let volume = try datastore(named: name).volume()
        do { return try volume.list() } catch { throw Self.agentError(error, file: nil) }
    }

    /// A file's attributes and its allocated ranges (everything else reads as zeros).
    public func fileDetail(on name: String, file: String) throws(AgentError) -> (FileStatus, [(offset: UInt64, length: UInt64)]) {
        let volume = try datastore(named: name).volume()
        do {
            let handle = try volume.open(file, access: .readOnly, client: Self.commandClient)
            defer { try? handle.close() }
            let status = try handle.status()
            var extents: [(offset: UInt64, length: UInt64)] = []
            var position: UInt64 = 0
            while position < status.size, extents.count < 100_000, let start = try handle.nextData(from: position) {
                let end = min(try handle.nextHole(from: start), status.size)
                guard end > start else { break }
                extents.append((start, end - start))
                position = end
            }
            return (status, extents)
        } catch {
            throw Self.agentError(error, file: file)
        }
    }

    /// Opens `file` for reading on behalf of a command.
    public func openForReading(on name: String, file: String) throws(AgentError) -> FileHandle {
        let volume = try datastore(named: name).volume()
        do { return try volume.open(file, access: .readOnly, client: Self.commandClient) } catch {
            throw Self.agentError(error, file: file)
        }
    }

    /// Opens `file` for writing on behalf of a command: created when missing; with `replace`, a
    /// temporary file is written and ``finishWrite(_:)`` renames it over `file`.
    public func openForWriting(on name: String, file: String, replace: Bool, offset: UInt64?) throws(AgentError) -> FileWrite {
        if let problem = FileName.validationError(file) { throw AgentError(.invalidArgument, problem.message, field: "file") }
        let volume = try datastore(named: name).volume()
        do {
            if replace || offset == nil {
                let temporary = ".\(file.prefix(200)).part-\(MonotonicClock.nanoseconds % 1_000_000_000)"
                let exists = (try? volume.status(of: file)) != nil
                if exists && !replace {
                    throw AgentError(.alreadyExists, "'\(file)' exists; write with replace=true or at an offset", field: "file")
                }
                let handle = try volume.create(temporary, access: .readWrite, client: Self.commandClient)
                return FileWrite(volume: volume, handle: handle, target: file, temporary: temporary)
            }
            let handle: FileHandle
            if (try? volume.status(of: file)) == nil {
                handle = try volume.create(file, access: .readWrite, client: Self.commandClient)
            } else {
                handle = try volume.open(file, access: .readWrite, client: Self.commandClient)
            }
            return FileWrite(volume: volume, handle: handle, target: file, temporary: nil, offset: offset ?? 0)
        } catch let error as AgentError {
            throw error
        } catch let error as VMFSError {
            throw Self.agentError(error, file: file)
        } catch {
            throw AgentError(.failed, "\(error)")
        }
    }

    public func createFile(on name: String, file: String, size: UInt64?, thick: Bool) throws(AgentError) -> FileStatus {
        let volume = try datastore(named: name).volume()
        do throws(VMFSError) {
            let handle = try volume.create(file, access: .readWrite, client: Self.commandClient)
            do throws(VMFSError) {
                if let size {
                    if thick { try handle.allocate(offset: 0, length: size) } else { try handle.truncate(to: size) }
                }
                let status = try handle.status()
                try handle.close()
                return status
            } catch {
                try? handle.close()
                try? volume.remove(file)
                throw error
            }
        } catch {
            throw Self.agentError(error, file: file)
        }
    }

    public func removeFile(on name: String, file: String) throws(AgentError) {
        let volume = try datastore(named: name).volume()
        do { try volume.remove(file) } catch { throw Self.agentError(error, file: file) }
    }

    public func renameFile(on name: String, file: String, to target: String, mode: RenameMode) throws(AgentError) -> FileStatus {
        let volume = try datastore(named: name).volume()
        do {
            try volume.rename(file, to: target, mode: mode)
            return try volume.status(of: target)
        } catch {
            throw Self.agentError(error, file: file)
        }
    }

    /// A volume error as the API reports it; a busy file names its owner.
    static func agentError(_ error: VMFSError, file: String?) -> AgentError {
        let code: AgentError.Code = switch error.code {
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .busy: .busy
        case .invalidArgument, .nameTooLong, .tooManyFiles, .fileTooLarge, .noSpace, .permissionDenied, .readOnly: .invalidArgument
        case .fenced, .staleHandle, .io, .corrupt, .timedOut: .storageUnavailable
        default: .failed
        }
        return AgentError(code, error.message, field: file == nil ? nil : "file", owner: error.code == .busy ? error.message : nil)
    }
}

/// A write of one file by a command, chunk by chunk.
public final class FileWrite: Sendable {
    let volume: Volume
    let handle: FileHandle
    let target: String
    let temporary: String?
    private let position: SystemSupport.Monitor<UInt64>

    init(volume: Volume, handle: FileHandle, target: String, temporary: String?, offset: UInt64 = 0) {
        self.volume = volume
        self.handle = handle
        self.target = target
        self.temporary = temporary
        position = SystemSupport.Monitor(offset)
    }

    /// Appends `bytes` after what was written so far.
    public func write(_ bytes: [UInt8]) throws(AgentError) {
        let offset = position.withLock { $0 }
        do { try handle.write(bytes: bytes, at: offset) } catch {
            throw HostAgent.agentError(error, file: target)
        }
        position.withLock { $0 += UInt64(bytes.count) }
    }

    /// Makes the data durable and, for a replacement, renames it over the target; with `size`,
    /// the file's size is set first.
    public func finish(size: UInt64? = nil) throws(AgentError) -> FileStatus {
        do {
            if let size, size != handle.size { try handle.truncate(to: size) }
            try handle.sync()
            try handle.close()
            if let temporary { try volume.rename(temporary, to: target, mode: .replace) }
            return try volume.status(of: target)
        } catch {
            abandon()
            throw HostAgent.agentError(error, file: target)
        }
    }

    /// Gives up: the temporary file (if any) is removed; a write at an offset keeps what was written.
    public func abandon() {
        try? handle.close()
        if let temporary { try? volume.remove(temporary) }
    }
}
