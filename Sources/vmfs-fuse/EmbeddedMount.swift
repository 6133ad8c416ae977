internal import CFuse
public import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A FUSE mount of a volume that another part of this process has mounted — the host agent, the
/// host's only member of its volumes. It is served by the same operations as `vmfs-fuse`, on
/// threads of its own, with no signal handling and no detaching; ``stop()`` writes back what the
/// kernel caches, unmounts and closes every handle the kernel left open (the volume stays mounted).
public final class EmbeddedMount: @unchecked Sendable {
    /// Why a mount could not start.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let mountpoint: String
    private let fileSystem: FileSystem
    private let configuration: Configuration
    private let session: OpaquePointer
    private let loopEnded = Mutex<Bool>(false)
    private let stopped = Mutex<Bool>(false)

    private init(mountpoint: String, fileSystem: FileSystem, configuration: Configuration, session: OpaquePointer) {
        self.mountpoint = mountpoint
        self.fileSystem = fileSystem
        self.configuration = configuration
        self.session = session
    }

    /// Mounts `volume` at `mountpoint` with `vmfs-fuse`'s `-o` options (`allow_other`,
    /// `no_writeback_cache`, `max_threads=N`, …; options about the volume itself, such as `host_id`,
    /// are the volume's and are refused).
    public static func start(volume: Volume, device: String, mountpoint: String, options: [String]) throws(Failure) -> EmbeddedMount {
        for option in options {
            let name = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
            if ["host_id", "ro", "rw", "heartbeat_ms", "dead_ms", "io_timeout_ms"].contains(name) {
                throw Failure(description: "mount option '\(name)' belongs to the volume's membership, which the host agent owns")
            }
        }
        var arguments = ["-f"]
        if !options.isEmpty { arguments += ["-o", options.joined(separator: ",")] }
        arguments += [device, mountpoint]
        let configuration: Configuration
        do {
            guard case .mount(let parsed) = try CommandLineParser.parse(arguments, workingDirectory: "/") else {
                throw Failure(description: "mount options \(options) do not describe a mount")
            }
            configuration = parsed
            try MountTable.validateMountpoint(configuration.mountpoint)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(error)")
        }
        let fileSystem = FileSystem(volume: volume, configuration: configuration)
        let words: [String] = ["vmfs-fuse", "-o", configuration.fuseOptions.joined(separator: ",")]
        var cArguments: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) }
        defer { for argument in cArguments { free(argument) } }
        var operations = Operations.table()
        let session = cArguments.withUnsafeMutableBufferPointer { argv -> OpaquePointer? in
            var fuseArguments = fuse_args(argc: Int32(argv.count), argv: argv.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&fuseArguments) }
            return fuse_session_new(&fuseArguments, &operations, MemoryLayout<fuse_lowlevel_ops>.size,
                                    Unmanaged.passUnretained(fileSystem).toOpaque())
        }
        guard let session else {
            throw Failure(description: "cannot create a FUSE session with options \(configuration.fuseOptions.joined(separator: ","))")
        }
        fileSystem.attach(session: session)
        guard fuse_session_mount(session, configuration.mountpoint) == 0 else {
            fuse_session_destroy(session)
            throw Failure(description: "cannot mount FUSE on \(configuration.mountpoint)")
        }
        let mount = EmbeddedMount(mountpoint: configuration.mountpoint, fileSystem: fileSystem, configuration: configuration,
                                  session: session)
        fileSystem.startJanitor()
        let started = NativeThread.start { [mount] in mount.serve() }
        guard started else {
            fuse_session_unmount(session)
            fuse_session_destroy(session)
            throw Failure(description: "cannot start the FUSE session thread")
        }
        Log.info("mounted \(device) on \(configuration.mountpoint) (served by this process's membership)")
        return mount
    }

    private func serve() {
        let loopConfiguration = fuse_loop_cfg_create()
        fuse_loop_cfg_set_clone_fd(loopConfiguration, 1)
        fuse_loop_cfg_set_max_threads(loopConfiguration, UInt32(configuration.maxThreads))
        fuse_loop_cfg_set_idle_threads(loopConfiguration, UInt32(configuration.maxThreads))
        _ = fuse_session_loop_mt(session, loopConfiguration)
        fuse_loop_cfg_destroy(loopConfiguration)
        // Unmounted from outside (umount): close what the kernel left open, releasing its locks.
        if !stopped.withLock({ $0 }) { fileSystem.closeAll() }
        loopEnded.withLock { $0 = true }
    }

    /// False once the mount ended (stopped, or unmounted with umount / fusermount3 -u).
    public var isServing: Bool { !loopEnded.withLock { $0 } }

    /// Writes back the kernel's cached writes, unmounts, and closes every handle left open
    /// (committing and releasing their locks). Safe to call more than once.
    public func stop() {
        let first = stopped.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        guard first else { return }
        let descriptor = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if descriptor >= 0 {
            _ = cfuse_syncfs(descriptor)
            close(descriptor)
        }
        fuse_session_exit(session)
        fuse_session_unmount(session)
        for _ in 0..<1000 where !loopEnded.withLock({ $0 }) { usleep(10_000) }
        if loopEnded.withLock({ $0 }) {
            fileSystem.closeAll()
            fuse_session_destroy(session)
        }
        Log.info("unmounted \(mountpoint)")
    }
}
