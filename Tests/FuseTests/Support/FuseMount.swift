import Foundation
import Testing

/// A vmfs-fuse daemon serving one mount point, started in the foreground as a child process.
///
/// `-o auto_unmount` makes fusermount3 remove the mount even when the daemon is killed. The
/// daemon's standard error goes to a log file the tests read (EBUSY owner messages, signals).
final class FuseMount {
    let mountpoint: String
    let hostID: String
    let logPath: String
    let process = Process()

    init(device: String, hostID: String, scratch: Scratch, options: [String] = [], arguments extra: [String] = []) throws {
        self.hostID = hostID
        mountpoint = scratch.directory("mnt-\(hostID)")
        logPath = scratch.file("vmfs-fuse-\(hostID).log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Environment.product("vmfs-fuse"))
        // VMFS_FUSE_TEST_OPTIONS=no_writeback_cache (for example) runs the suite in another mode.
        let extraOptions = ProcessInfo.processInfo.environment["VMFS_FUSE_TEST_OPTIONS"].map { [$0] } ?? []
        process.arguments = ["-f", "-o", (["auto_unmount", "host_id=\(hostID)"] + options + extraOptions).joined(separator: ","),
                             device, mountpoint] + extra
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardError = log
        process.standardOutput = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try log.close()
        let mounted = eventually(timeout: 30) { isMounted || !process.isRunning }
        guard mounted, isMounted else {
            if process.isRunning { process.terminate() }
            _ = waitForExit(process, timeout: 5)
            throw HarnessError("vmfs-fuse did not mount \(mountpoint) as \(hostID): \(self.log)")
        }
    }

    /// True while the kernel lists a mount on `mountpoint`.
    var isMounted: Bool { mountEntry != nil }

    /// The mount table line of `mountpoint`, if mounted.
    var mountEntry: String? {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").last { $0.split(separator: " ").dropFirst(4).first.map(String.init) == mountpoint }
            .map(String.init)
    }

    /// The daemon's output so far.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The path of `name` inside the mount.
    func path(_ name: String) -> String { mountpoint + "/" + name }

    /// Unmounts with `fusermount3 -u` and waits for the daemon to exit; returns its status.
    @discardableResult
    func unmount(timeout: TimeInterval = 30) throws -> Int32 {
        if isMounted, let fusermount = Environment.fusermount {
            let result = try run(fusermount, ["-u", mountpoint])
            guard result.status == 0 else { throw HarnessError("fusermount3 -u \(mountpoint) failed: \(result)") }
        }
        guard waitForExit(process, timeout: timeout) else { throw HarnessError("vmfs-fuse (\(hostID)) did not exit after unmount") }
        return process.terminationStatus
    }

    /// Sends `signal` to the daemon.
    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    deinit {
        if process.isRunning {
            process.terminate()
            if !waitForExit(process, timeout: 10) { kill(process.processIdentifier, SIGKILL) }
            _ = waitForExit(process, timeout: 5)
        }
        if isMounted, let fusermount = Environment.fusermount {
            _ = try? run(fusermount, ["-u", "-z", mountpoint], timeout: 10)
        }
    }
}
