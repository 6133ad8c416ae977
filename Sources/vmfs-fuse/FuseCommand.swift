// vmfs-fuse: mounts a VMFS volume through FUSE (libfuse3 low-level API). See docs/FUSE.md.
internal import CFuse
#if canImport(Glibc)
internal import Glibc
#endif

/// The program version shown by `--version`.
let version = "1.0"

private func workingDirectory() -> String {
    guard let path = getcwd(nil, 0) else { return "/" }
    defer { free(path) }
    return String(cString: path)
}

/// The `vmfs-fuse` command (the executable in `Tools/vmfs-fuse` runs it).
public enum VMFSFuseCommand {
    /// Parses `arguments` (without the program name) and mounts, detaching unless `-f`; returns the exit status.
    public static func run(arguments: [String]) -> Int32 {
        let invocation: Invocation
        do {
            invocation = try CommandLineParser.parse(arguments, workingDirectory: workingDirectory())
        } catch {
            Log.error("\(error.message) (see vmfs-fuse --help)")
            return 2
        }
        switch invocation {
        case .help:
            print(CommandLineParser.usage)
            return 0
        case .version:
            print("vmfs-fuse \(version) (libfuse \(String(cString: fuse_pkgversion())))")
            return 0
        case .mount(let configuration):
            if !configuration.foreground && configuration.readyDescriptor == nil {
                return Launcher.runDetached(arguments: arguments)
            }
            return Daemon.run(configuration)
        }
    }

    /// What a mount command asks for, for handing it to the host agent: the device, the mount
    /// point (absolute) and the host identity, or nil when `arguments` are not a valid mount.
    public static func mountRequest(arguments: [String]) -> (device: String, mountpoint: String, hostID: String?)? {
        guard case .mount(let configuration)? = try? CommandLineParser.parse(arguments, workingDirectory: workingDirectory()) else {
            return nil
        }
        return (configuration.device, configuration.mountpoint, configuration.hostID)
    }

    /// The `-o` options the user gave that a host agent's mount can take (those about the
    /// volume's membership, which the agent owns, left out).
    public static func passThroughOptions(arguments: [String]) -> [String] {
        var options: [String] = []
        var index = 0
        while index < arguments.count {
            if arguments[index] == "-o", index + 1 < arguments.count {
                options += arguments[index + 1].split(separator: ",").map(String.init)
                index += 2
            } else {
                index += 1
            }
        }
        let membership = ["host_id", "heartbeat_ms", "dead_ms", "io_timeout_ms", "lock_wait_ms", "rw"]
        return options.filter { option in !membership.contains(String(option.split(separator: "=").first ?? "")) }
    }
}
