internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// Where the daemon's messages go: standard error while it runs in the foreground (and before it
/// detaches, so that mount errors reach the caller's terminal), syslog once it runs detached.
enum Log {
    /// How much is logged and where.
    private struct Settings {
        var useSyslog = false
        var verbose = false
    }

    private static let settings = Mutex(Settings())

    /// Sends later messages to syslog (`daemon` facility, tagged `vmfs-fuse`).
    static func switchToSyslog() {
        openlog("vmfs-fuse", LOG_PID | LOG_NDELAY, LOG_DAEMON)
        settings.withLock { $0.useSyslog = true }
    }

    /// Logs every failed request, not only those an operator needs to see.
    static func setVerbose(_ verbose: Bool) {
        settings.withLock { $0.verbose = verbose }
    }

    static var isVerbose: Bool { settings.withLock { $0.verbose } }

    static func error(_ message: String) { emit(LOG_ERR, "error: " + message) }
    static func warning(_ message: String) { emit(LOG_WARNING, "warning: " + message) }
    static func info(_ message: String) { emit(LOG_INFO, message) }
    static func debug(_ message: String) { if isVerbose { emit(LOG_DEBUG, message) } }

    /// Logs a failed request by how much it matters: lock conflicts name the owner host (so an
    /// operator can tell who has a VM disk open), device and consistency errors are errors, and
    /// ordinary outcomes (no such file, file exists) are only logged in verbose mode.
    static func requestFailed(_ operation: String, _ error: VMFSError) {
        switch error.code {
        case .busy:
            warning("\(operation): \(error.description)")
        case .io, .corrupt, .fenced, .staleHandle, .timedOut, .noSpace, .tooManyFiles:
            self.error("\(operation): \(error.description)")
        default:
            debug("\(operation): \(error.description)")
        }
    }

    private static func emit(_ priority: Int32, _ message: String) {
        if settings.withLock({ $0.useSyslog }) {
            message.withCString { cfuse_syslog(priority, $0) }
            return
        }
        let line = "vmfs-fuse: " + message + "\n"
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return write(STDERR_FILENO, base + offset, buffer.count - offset)
            }
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                break
            }
            offset += written
        }
        bytes.removeAll()
    }
}
