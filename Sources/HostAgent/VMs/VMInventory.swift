internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// The VMs registered on this host (`STATE/inventory.json`), as the agent keeps them across
/// restarts: UUID, datastore and name of each.
struct VMInventory: Codable, Sendable, Equatable {
    struct Entry: Codable, Sendable, Equatable {
        var uuid: String
        var datastore: String
        var name: String
    }

    /// Format version of the file.
    var version = 1
    var vms: [Entry] = []

    static func load(path: String) throws(AgentError) -> VMInventory {
        guard let data = FileManager.default.contents(atPath: path) else { return VMInventory() }
        do {
            let inventory = try JSONDecoder().decode(VMInventory.self, from: data)
            guard inventory.version == 1 else {
                throw AgentError(.failed, "\(path) has inventory format \(inventory.version); this agent reads version 1")
            }
            return inventory
        } catch let error as AgentError {
            throw error
        } catch {
            throw AgentError(.failed, "\(path) is not a valid inventory: \(error)")
        }
    }

    /// Writes the inventory atomically (temporary file, fsync, rename).
    func save(path: String) throws(AgentError) {
        let temporary = path + ".tmp"
        let data: Data
        do { data = try JSONEncoder().encode(self) } catch { throw AgentError(.failed, "cannot encode the inventory: \(error)") }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AgentError(.failed, "cannot write \(temporary): errno \(errno)") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == data.count, synced, rename(temporary, path) == 0 else {
            throw AgentError(.failed, "cannot write \(path): errno \(errno)")
        }
    }
}
