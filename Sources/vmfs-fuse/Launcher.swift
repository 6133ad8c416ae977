internal import CFuse
#if canImport(Glibc)
internal import Glibc
#endif

/// Detaching from the caller only once the mount worked.
///
/// `fork` after the volume is mounted would lose the heartbeat thread (only the forking thread
/// survives a fork), so the daemon starts a fresh copy of itself with `--ready-fd` before
/// anything is mounted and waits. The copy runs in its own session, mounts, and reports on the
/// pipe: one byte when the mount is up, end of file (its exit) when it failed. Its errors go to
/// the caller's standard error, which it shares until it detaches, and its exit status becomes
/// the caller's.
enum Launcher {
    /// Starts the daemon in the background and waits for it to mount. Returns the exit status.
    static func runDetached(arguments: [String]) -> Int32 {
        var descriptors: [Int32] = [0, 0]
        guard pipe(&descriptors) == 0 else {
            Log.error("cannot create a pipe: \(String(cString: strerror(errno)))")
            return 1
        }
        let (readEnd, writeEnd) = (descriptors[0], descriptors[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        let executable = executablePath() ?? CommandLine.arguments[0]
        let childArguments = [executable] + arguments + ["--ready-fd", "\(writeEnd)"]
        var cArguments = childArguments.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, nil, nil, &cArguments, cfuse_environ())
        close(writeEnd)
        guard spawned == 0 else {
            close(readEnd)
            Log.error("cannot start the daemon: \(String(cString: strerror(spawned)))")
            return 1
        }
        var byte: UInt8 = 0
        var count: Int
        repeat { count = read(readEnd, &byte, 1) } while count < 0 && errno == EINTR
        close(readEnd)
        if count == 1 { return 0 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status & 0x7f == 0 { return (status >> 8) & 0xff }  // exited: its status
        return 128 + (status & 0x7f)  // killed by a signal
    }

    /// In the detached copy, before anything else happens: leave the caller's session and
    /// close every descriptor inherited from the caller but the standard ones and the pipe.
    /// (A caller that waits for a descriptor it passed to reach end of file — a test
    /// harness's process monitor, a pipe of mount(8)'s caller — would otherwise wait for as
    /// long as the daemon lives.)
    static func detachFromCaller(keeping ready: Int32) {
        _ = setsid()
        var inherited: [Int32] = []
        if let directory = opendir("/proc/self/fd") {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if let descriptor = Int32(name) { inherited.append(descriptor) }
            }
            closedir(directory)
        }
        for descriptor in inherited where descriptor > STDERR_FILENO && descriptor != ready {
            close(descriptor)
        }
    }

    /// In the detached copy, once mounted: tell the caller, then stop using its terminal.
    static func reportReady(on descriptor: Int32) {
        var byte: UInt8 = 1
        _ = write(descriptor, &byte, 1)
        close(descriptor)
        let null = open("/dev/null", O_RDWR)
        if null >= 0 {
            for target in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] { dup2(null, target) }
            if null > STDERR_FILENO { close(null) }
        }
        _ = chdir("/")
        Log.switchToSyslog()
    }

    /// The path of the running executable.
    private static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
