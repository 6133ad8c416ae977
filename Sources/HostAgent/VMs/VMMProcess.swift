public import SystemSupport
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A running `vmx` process: started by this agent, or adopted from a previous one. Its exit is
/// watched through a pidfd, which works for processes that are not our children too.
final class VMMProcess: Sendable {
    let pid: Int32
    let startTicks: UInt64
    private let pidfd: OwnedDescriptor
    /// True when this agent started it (its exit status can be collected).
    let isChild: Bool

    private init(pid: Int32, startTicks: UInt64, pidfd: OwnedDescriptor, isChild: Bool) {
        self.pid = pid
        self.startTicks = startTicks
        self.pidfd = pidfd
        self.isChild = isChild
    }

    /// Starts `executable --socket socketPath` in its own session (it survives the agent), with
    /// its output in `logPath`.
    static func spawn(executable: String, socketPath: String, logPath: String) throws(AgentError) -> VMMProcess {
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { if log >= 0 { close(log) } }
        let arguments = [executable, "--socket", socketPath]
        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        let pid = cvmfs_spawn_detached(executable, &cArguments, log)
        guard pid > 0 else {
            throw AgentError(.failed, "cannot start the VMM \(executable): \(SystemError("posix_spawn", errno: -pid))")
        }
        do {
            return try adopt(pid: pid, isChild: true)
        } catch {
            _ = cvmfs_kill(pid, SIGKILL)
            throw error
        }
    }

    /// Watches an existing process.
    static func adopt(pid: Int32, isChild: Bool = false) throws(AgentError) -> VMMProcess {
        var ticks: UInt64 = 0
        let fd = cvmfs_pidfd_open(pid)
        guard fd >= 0, cvmfs_process_start_time(pid, &ticks) == 0 else {
            if fd >= 0 { close(fd) }
            throw AgentError(.notFound, "process \(pid) is gone")
        }
        return VMMProcess(pid: pid, startTicks: ticks, pidfd: OwnedDescriptor(fd), isChild: isChild)
    }

    /// The start time of `pid` (nil when it does not exist).
    static func startTicks(of pid: Int32) -> UInt64? {
        var ticks: UInt64 = 0
        return cvmfs_process_start_time(pid, &ticks) == 0 ? ticks : nil
    }

    /// Blocks until the process exits; returns a description of how (exit status or signal;
    /// "exited" when it was not our child and its status is unknown).
    func waitForExit() -> String {
        while true {
            let ready = cvmfs_poll_one(pidfd.rawValue, Int16(POLLIN), -1)
            if ready > 0 || ready == -Int32(EBADF) { break }
            if ready < 0 { MonotonicClock.sleep(milliseconds: 50) }
        }
        guard isChild else { return "exited" }
        var status: Int32 = 0
        let reaped = cvmfs_wait_nohang(pid, &status)
        guard reaped == pid else { return "exited" }
        if cvmfs_exit_status_signaled(status) != 0 { return "killed by signal \(cvmfs_exit_status_signal(status))" }
        return "exited with status \(cvmfs_exit_status_code(status))"
    }

    /// True until the process has exited.
    var isRunning: Bool { cvmfs_poll_one(pidfd.rawValue, Int16(POLLIN), 0) == 0 }

    func kill(_ signal: Int32 = SIGKILL) { _ = cvmfs_kill(pid, signal) }

    /// The process's CPU time (user + system) and resident memory, from `/proc`.
    func usage() -> (cpuNanoseconds: UInt64, residentBytes: UInt64)? {
        ProcessUsage.read(pid: pid)
    }
}
