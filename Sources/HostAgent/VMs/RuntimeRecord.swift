internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// What a restarted agent needs to find and adopt a running VMM: `RUN/vms/UUID.json`.
struct RuntimeRecord: Codable, Sendable, Equatable {
    var vmUUID: String
    var vmName: String
    var datastore: String
    var pid: Int32
    /// The process's start time (clock ticks since boot) so a reused pid is not mistaken for it.
    var pidStartTicks: UInt64
    var socketPath: String
    var poweredOnNanoseconds: Int64

    static func path(directory: String, uuid: String) -> String { "\(directory)/\(uuid).json" }

    /// Writes the record atomically (temporary file, fsync, rename).
    func save(directory: String) throws(AgentError) {
        let target = Self.path(directory: directory, uuid: vmUUID)
        let temporary = target + ".tmp"
        do {
            let data = try JSONEncoder().encode(self)
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw AgentError(.failed, "cannot write \(temporary): errno \(errno)") }
            defer { close(fd) }
            let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == data.count, fsync(fd) == 0, rename(temporary, target) == 0 else {
                throw AgentError(.failed, "cannot write \(target): errno \(errno)")
            }
        } catch let error as AgentError {
            throw error
        } catch {
            throw AgentError(.failed, "cannot encode the runtime record of \(vmName): \(error)")
        }
    }

    static func remove(directory: String, uuid: String) { unlink(path(directory: directory, uuid: uuid)) }

    /// Every readable record in `directory`.
    static func all(in directory: String) -> [RuntimeRecord] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            FileManager.default.contents(atPath: "\(directory)/\(name)").flatMap { try? JSONDecoder().decode(RuntimeRecord.self, from: $0) }
        }
    }
}
