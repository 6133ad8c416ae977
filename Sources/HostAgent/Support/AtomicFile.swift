internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// Replaces a small state file in one step: a temporary file, `fsync`, `rename`.
enum AtomicFile {
    static func write(_ data: Data, to path: String) throws(AgentError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AgentError(.failed, "cannot write \(temporary): errno \(errno)") }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == data.count, synced, rename(temporary, path) == 0 else {
            throw AgentError(.failed, "cannot write \(path): errno \(errno)")
        }
    }
}
