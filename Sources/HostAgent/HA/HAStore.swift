internal import VMFSCore
internal import Glibc
internal import FoundationEssentials

/// Reads and writes the HA files on a volume: `.ha-cluster.json` (under its file lock, so two
/// members never update it at once) and each member's `.ha-host-NAME.json`.
enum HAStore {
    static let configurationFile = ".ha-cluster.json"
    static func statusFile(_ host: String) -> String { ".ha-host-\(String(host.prefix(200))).json" }
    static let client = FileClient("HA")
    /// Larger files are refused (a hostile or damaged file must not make the agent allocate much).
    static let maximumBytes: UInt64 = 4 << 20

    private static func storageError(_ error: VMFSError, _ name: String) -> AgentError {
        AgentError(error.code == .busy ? .busy : .storageUnavailable, "\(name): \(error.message)")
    }

    /// Opens `name` for writing, creating it (mode 0600) when missing.
    private static func openForWriting(_ name: String, on volume: Volume) throws(AgentError) -> FileHandle {
        do {
            return try volume.open(name, access: .readWrite, client: client)
        } catch where error.code == .notFound {
            do {
                return try volume.create(name, attributes: CreateAttributes(mode: 0o600), access: .readWrite, client: client)
            } catch {
                throw storageError(error, name)
            }
        } catch {
            throw storageError(error, name)
        }
    }

    /// The whole content of an open file (bounded).
    private static func contents(_ handle: FileHandle, _ name: String) throws(AgentError) -> [UInt8] {
        guard handle.size <= maximumBytes else { throw AgentError(.failed, "\(name) is \(handle.size) bytes; at most \(maximumBytes) are read") }
        do { return try handle.read(count: Int(handle.size), at: 0) } catch { throw storageError(error, name) }
    }

    /// Replaces the content of an open file.
    private static func replace(_ handle: FileHandle, with bytes: [UInt8], _ name: String) throws(AgentError) {
        do {
            try handle.write(bytes: bytes, at: 0)
            if handle.size != UInt64(bytes.count) { try handle.truncate(to: UInt64(bytes.count)) }
            try handle.sync()
        } catch {
            throw storageError(error, name)
        }
    }

    private static func encode<T: Encodable>(_ value: T, _ name: String) throws(AgentError) -> [UInt8] {
        do { return Array(try JSONEncoder().encode(value)) } catch { throw AgentError(.failed, "encoding \(name): \(error)") }
    }

    private static func decode<T: HAStoredValue>(_ type: T.Type, _ bytes: [UInt8], _ name: String) throws(AgentError) -> T {
        let value: T
        do { value = try JSONDecoder().decode(T.self, from: Data(bytes)) } catch {
            throw AgentError(.failed, "\(name) is not valid JSON of its format: \(error)")
        }
        do { try value.checkStored() } catch { throw AgentError(.failed, "\(name): \(error.message)") }
        return value
    }

    /// `name` decoded, or nil when there is no such file.
    static func read<T: HAStoredValue>(_ type: T.Type, _ name: String, on volume: Volume) throws(AgentError) -> T? {
        let handle: FileHandle
        do { handle = try volume.open(name, access: .readOnly, client: client) } catch {
            if error.code == .notFound { return nil }
            throw storageError(error, name)
        }
        defer { try? handle.close() }
        return try decode(T.self, try contents(handle, name), name)
    }

    /// Replaces `name` with `value` (created if missing).
    static func write<T: Encodable>(_ value: T, _ name: String, on volume: Volume) throws(AgentError) {
        let bytes = try encode(value, name)
        let handle = try openForWriting(name, on: volume)
        defer { try? handle.close() }
        try replace(handle, with: bytes, name)
    }

    /// Updates the cluster configuration: the copy on the first volume is held open read-write
    /// for the whole update, so its lock serializes updates from every member; the newest copy
    /// of all the volumes is changed and written, with the generation increased, to each volume.
    /// A member that finds the lock busy retries for up to five seconds. Returns the
    /// configuration as it is afterwards.
    static func update(on volumes: [Volume], _ change: (inout HAConfiguration?) throws(AgentError) -> Void) throws(AgentError) -> HAConfiguration? {
        guard let primaryVolume = volumes.first else { return nil }
        let name = configurationFile
        let primary = try openRetrying(name, on: primaryVolume)
        defer { try? primary.close() }
        var copies: [(Volume, FileHandle?, HAConfiguration?)] = [(primaryVolume, primary, nil)]
        var problems: [AgentError] = []
        for volume in volumes.dropFirst() {
            do { copies.append((volume, try openForWriting(name, on: volume), nil)) } catch { problems.append(error) }
        }
        defer { for (_, handle, _) in copies.dropFirst() { try? handle?.close() } }
        for index in copies.indices {
            guard let handle = copies[index].1 else { continue }
            let bytes = try contents(handle, name)
            // A damaged copy is not silently replaced: the error names it (remove it with `vmfs rm`
            // and the next change writes it again from the others).
            copies[index].2 = bytes.isEmpty ? nil : try decode(HAConfiguration.self, bytes, name)
        }
        let before = copies.compactMap(\.2).max { $0.generation < $1.generation }
        var configuration = before
        try change(&configuration)
        guard var changed = configuration else { return nil }
        let stale = copies.contains { $0.2 != before }
        guard changed != before || stale else { return changed }
        if changed != before { changed.generation = max(changed.generation, (before?.generation ?? 0) + 1) }
        if changed.failovers.count > HAConfiguration.failoverHistory {
            changed.failovers.removeFirst(changed.failovers.count - HAConfiguration.failoverHistory)
        }
        let encoded = try encode(changed, name)
        // The others first, the primary (whose lock orders updates) last.
        for (_, handle, copy) in copies.dropFirst() where copy != changed {
            if let handle { try replace(handle, with: encoded, name) }
        }
        if copies[0].2 != changed { try replace(primary, with: encoded, name) }
        if let problem = problems.first, copies.count == 1 && volumes.count > 1 { throw problem }
        return changed
    }

    /// Opens `name` read-write, waiting up to five seconds while another member holds it.
    private static func openRetrying(_ name: String, on volume: Volume) throws(AgentError) -> FileHandle {
        var delay: UInt32 = 10_000
        for attempt in 0..<40 {
            do {
                return try openForWriting(name, on: volume)
            } catch where error.code == .busy && attempt < 39 {
                usleep(delay)
                delay = min(delay * 2, 200_000)
            }
        }
        return try openForWriting(name, on: volume)
    }
}
