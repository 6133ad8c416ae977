#if canImport(Glibc)
internal import Glibc
#endif
internal import VMFSCore

/// A command line that cannot be used; the message says why.
struct UsageError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// What the command line asks for.
enum Invocation: Equatable {
    case mount(Configuration)
    case help
    case version
}

/// Parses `vmfs-fuse [-f] [-d] [-s] [-o opt,...] [--host-id ID] DEVICE MOUNTPOINT`.
///
/// Options may come before or after the two operands, because mount(8) runs helpers as
/// `mount.fuse.vmfs DEVICE MOUNTPOINT -o OPTIONS`.
struct CommandLineParser {
    static let usage = """
        usage: vmfs-fuse [-f] [-d] [-s] [-o OPTION[,OPTION...]] [--host-id ID] DEVICE MOUNTPOINT

        Mounts the VMFS volume on DEVICE (an image file or a block device) at MOUNTPOINT. Many
        hosts may mount one volume at once; each needs its own host identity.

          -f, --foreground      stay in the foreground (default: detach once mounted)
          -d, --debug           print every FUSE request (implies -f)
          -s                    serve requests on a single thread
          --host-id ID          host identity (same as -o host_id=ID; default /etc/machine-id)
          --lock-wait-ms N      wait up to N ms for a file another host has locked (default 1000)
          -h, --help            show this text
          -V, --version         show the version

        VMFS options (-o):
          host_id=ID            host identity: a UUID, or any text hashed to one
          ro                    mount read-only (shared file locks only)
          lock_wait_ms=N        as --lock-wait-ms
          attr_timeout=SECONDS  attribute cache time for files this host has open (default 1)
          read_ahead_kb=N       kernel readahead of the mount (default 1024; 0 = kernel default)
          max_threads=N         FUSE worker threads (default 16)
          no_writeback_cache    send every write to the daemon as it is made (default: the kernel
                                caches writes while this host holds the file's exclusive lock)
          splice_read           answer reads by splicing from the device
        FUSE options (-o), passed to libfuse and the kernel:
          allow_other, allow_root, auto_unmount, default_permissions (always on), fsname=,
          subtype=, max_read=, nosuid, suid, nodev, dev, noexec, exec, noatime, sync, async, dirsync
        Options mount(8) adds (defaults, rw, auto, noauto, nofail, _netdev, user, users, nouser,
        x-*, comment=) are accepted and ignored.
        """

    /// FUSE options libfuse 3.14 understands, passed on unchanged.
    private static let fuseFlags: Set<String> = [
        "allow_other", "allow_root", "auto_unmount", "default_permissions",
        "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "dirsync",
        "atime", "noatime", "nodiratime", "nostrictatime", "symfollow", "nosymfollow",
    ]
    private static let fuseValued: Set<String> = ["fsname", "subtype", "context", "fscontext", "defcontext", "rootcontext", "blksize"]
    /// Options mount(8) and fstab add that mean nothing to the daemon.
    private static let ignoredFlags: Set<String> = ["defaults", "rw", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser",
                                                    "owner", "group", "relatime", "norelatime", "strictatime", "lazytime", "nolazytime",
                                                    "silent", "loud"]

    private var configuration = Configuration(device: "", mountpoint: "")
    private var operands: [String] = []
    private var sawFsname = false
    private var sawSubtype = false
    private var maxRead: UInt32?

    /// Parses `arguments` (without the program name).
    static func parse(_ arguments: [String], workingDirectory: String) throws(UsageError) -> Invocation {
        var parser = CommandLineParser()
        var index = 0
        var onlyOperands = false
        /// The option's value: after `=`, or the next argument.
        func value(_ inline: String?, of name: String) throws(UsageError) -> String {
            if let inline { return inline }
            index += 1
            guard index < arguments.count else { throw UsageError("option \(name) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            if onlyOperands || !argument.hasPrefix("-") || argument == "-" {
                parser.operands.append(argument)
                index += 1
                continue
            }
            let (name, inline) = Self.split(argument)
            switch name {
            case "--":
                onlyOperands = true
            case "-h", "--help":
                return .help
            case "-V", "--version":
                return .version
            case "-f", "--foreground":
                parser.configuration.foreground = true
            case "-d", "--debug":
                parser.configuration.debug = true
                parser.configuration.foreground = true
            case "-s":
                parser.configuration.singleThreaded = true
            case "-o":
                try parser.addOptions(try value(inline, of: "-o"))
            case "-n", "-v":
                break  // mount(8) helper flags: no mtab (there is none), verbose
            case "--host-id":
                try parser.addOption("host_id", try value(inline, of: name))
            case "--heartbeat-ms":
                try parser.addOption("heartbeat_ms", try value(inline, of: name))
            case "--dead-ms":
                try parser.addOption("dead_ms", try value(inline, of: name))
            case "--io-timeout-ms":
                try parser.addOption("io_timeout_ms", try value(inline, of: name))
            case "--lock-wait-ms":
                try parser.addOption("lock_wait_ms", try value(inline, of: name))
            case "--ready-fd":
                let text = try value(inline, of: name)
                guard let descriptor = Int32(text), descriptor > 2 else { throw UsageError("--ready-fd needs a descriptor number") }
                parser.configuration.readyDescriptor = descriptor
            default:
                if argument.hasPrefix("-o") && argument.count > 2 {
                    try parser.addOptions(String(argument.dropFirst(2)))
                } else {
                    throw UsageError("unknown option '\(argument)'")
                }
            }
            index += 1
        }
        return .mount(try parser.finish(workingDirectory: workingDirectory))
    }

    /// `--name=value` → (`--name`, `value`); anything else → (argument, nil).
    private static func split(_ argument: String) -> (String, String?) {
        guard argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") else { return (argument, nil) }
        return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
    }

    private mutating func addOptions(_ list: String) throws(UsageError) {
        for item in list.split(separator: ",", omittingEmptySubsequences: true) {
            if let equals = item.firstIndex(of: "=") {
                try addOption(String(item[..<equals]), String(item[item.index(after: equals)...]))
            } else {
                try addOption(String(item), nil)
            }
        }
    }

    private func number(_ name: String, _ value: String?) throws(UsageError) -> UInt32 {
        guard let value, let number = UInt32(value) else { throw UsageError("option \(name) needs a whole number, not '\(value ?? "")'") }
        return number
    }

    private mutating func addOption(_ name: String, _ value: String?) throws(UsageError) {
        switch name {
        case "host_id":
            guard let value, !value.isEmpty else { throw UsageError("option host_id needs a value") }
            configuration.hostID = value
        case "ro":
            configuration.readOnly = true
            configuration.fuseOptions.append("ro")
        case "heartbeat_ms": configuration.heartbeatMs = try number(name, value)
        case "dead_ms": configuration.deadMs = try number(name, value)
        case "io_timeout_ms": configuration.ioTimeoutMs = try number(name, value)
        case "lock_wait_ms": configuration.lockWaitMs = try number(name, value)
        case "read_ahead_kb": configuration.readAheadKiB = try number(name, value)
        case "max_threads":
            let threads = try number(name, value)
            guard threads >= 1 && threads <= 256 else { throw UsageError("option max_threads must be 1–256") }
            configuration.maxThreads = Int32(threads)
        case "attr_timeout":
            guard let value, let seconds = Double(value), seconds >= 0, seconds <= 3600 else {
                throw UsageError("option attr_timeout needs seconds between 0 and 3600")
            }
            configuration.lockedAttributeTimeout = seconds
        case "writeback_cache": configuration.writebackCache = true
        case "no_writeback_cache": configuration.writebackCache = false
        case "splice_read": configuration.spliceReads = true
        case "no_splice_read": configuration.spliceReads = false
        case "no_default_permissions":
            // The daemon checks no permissions itself: the kernel's mode-bit checks are all there is.
            throw UsageError("option no_default_permissions is refused: vmfs-fuse leaves permission checks to the kernel "
                             + "(default_permissions, always on), and without them any user could read, write and chown "
                             + "every file (with allow_other, other users too)")
        case "max_read":
            let bytes = try number(name, value)
            guard bytes >= 4096 else { throw UsageError("option max_read must be at least 4096") }
            maxRead = bytes
        case "debug":
            configuration.debug = true
            configuration.foreground = true
        default:
            if Self.ignoredFlags.contains(name) || name.hasPrefix("x-") || name == "comment" { return }
            if Self.fuseFlags.contains(name) && value == nil {
                configuration.fuseOptions.append(name)
            } else if Self.fuseValued.contains(name), let value {
                if name == "fsname" { sawFsname = true }
                if name == "subtype" { sawSubtype = true }
                configuration.fuseOptions.append("\(name)=\(value)")
            } else {
                throw UsageError("unknown mount option '\(value.map { "\(name)=\($0)" } ?? name)'")
            }
        }
    }

    private mutating func finish(workingDirectory: String) throws(UsageError) -> Configuration {
        guard operands.count == 2 else {
            throw UsageError(operands.count < 2 ? "missing operand: need DEVICE and MOUNTPOINT"
                                                : "too many operands: \(operands.joined(separator: " "))")
        }
        let timing = [configuration.heartbeatMs, configuration.deadMs, configuration.ioTimeoutMs]
        if timing.contains(where: { $0 != nil }) && timing.contains(where: { $0 == nil }) {
            throw UsageError("heartbeat_ms, dead_ms and io_timeout_ms must be given together")
        }
        // An iSCSI URL is not a path; the mount table shows it without its password.
        configuration.device = ISCSIAddress.isISCSI(operands[0]) ? operands[0] : Self.absolute(operands[0], in: workingDirectory)
        configuration.mountpoint = Self.normalized(Self.absolute(operands[1], in: workingDirectory))
        if let maxRead { configuration.maxTransfer = min(configuration.maxTransfer, maxRead) }
        configuration.fuseOptions.append("max_read=\(configuration.maxTransfer)")
        if !sawFsname { configuration.fuseOptions.append("fsname=\(Self.escaped(DeviceOpener.displayName(configuration.device)))") }
        if !sawSubtype { configuration.fuseOptions.append("subtype=vmfs") }
        if !configuration.fuseOptions.contains("default_permissions") {
            configuration.fuseOptions.append("default_permissions")
        }
        return configuration
    }

    private static func absolute(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") ? path : (directory.hasSuffix("/") ? directory : directory + "/") + path
    }

    /// Drops `.` components, duplicate and trailing slashes (mount tables list paths so).
    private static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// libfuse splits options at commas: escape them (and backslashes) in a value.
    private static func escaped(_ value: String) -> String {
        var result = ""
        for character in value {
            if character == "\\" || character == "," { result.append("\\") }
            result.append(character)
        }
        return result
    }
}
