internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// Mounts the volume, serves it until unmounted or signalled, and leaves the volume cleanly.
///
/// Order matters for the guarantees of the command:
/// 1. the mount point and the device are checked before anything is written, so a busy mount
///    point or a missing device leaves the volume untouched;
/// 2. the volume is mounted (heartbeat slot claimed), which fails on a non-VMFS device before
///    any write;
/// 3. the FUSE session is mounted; only then does a detached daemon let its caller go;
/// 4. after the loop ends (unmount, `fusermount3 -u`, SIGTERM/SIGINT/SIGHUP) every handle the
///    kernel left open is closed, which commits and releases the file locks, and the volume is
///    unmounted, which frees the heartbeat slot.
enum Daemon {
    static func run(_ configuration: Configuration) -> Int32 {
        SignalWatcher.blockSignals()
        if let ready = configuration.readyDescriptor { Launcher.detachFromCaller(keeping: ready) }
        Log.setVerbose(configuration.debug)
        // A stop signal while mounting gives the mount up: every wait of the mount polls the
        // process's interruption (watching a previous incarnation's slot, a stopped repair, …).
        SignalWatcher.start(mainThread: pthread_self(), loopFinished: { loopFinished.load(ordering: .acquiring) })
        SignalWatcher.onStop { signal in
            Log.info("received signal \(signal) while mounting: giving up")
            Interruption.process.request()
        }
        let volume: Volume
        do {
            try MountTable.validateMountpoint(configuration.mountpoint)
            try MountTable.validateDevice(configuration.device)
            volume = try Volume.mount(path: configuration.device, options: configuration.mountOptions)
        } catch {
            Log.error("cannot mount \(configuration.device) on \(configuration.mountpoint): \(error.description)")
            return 1
        }
        let fileSystem = FileSystem(volume: volume, configuration: configuration)
        let status = withExtendedLifetime(fileSystem) { serve(fileSystem, configuration) }
        do {
            try volume.unmount()
        } catch {
            Log.error("unmounting the volume: \(error.description)")
            return 1
        }
        Log.info("unmounted \(configuration.mountpoint); file locks and heartbeat slot released")
        return status
    }

    /// Runs the FUSE session on `fileSystem`; returns the exit status.
    private static func serve(_ fileSystem: FileSystem, _ configuration: Configuration) -> Int32 {
        var arguments = ["vmfs-fuse", "-o", configuration.fuseOptions.joined(separator: ",")]
        if configuration.debug { arguments.append("-d") }
        var cArguments = arguments.map { strdup($0) }
        defer { for argument in cArguments { free(argument) } }
        var operations = Operations.table()
        return cArguments.withUnsafeMutableBufferPointer { argv -> Int32 in
            var fuseArguments = fuse_args(argc: Int32(argv.count), argv: argv.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&fuseArguments) }
            guard let session = fuse_session_new(&fuseArguments, &operations, MemoryLayout<fuse_lowlevel_ops>.size,
                                                 Unmanaged.passUnretained(fileSystem).toOpaque()) else {
                Log.error("cannot create the FUSE session (options: \(configuration.fuseOptions.joined(separator: ",")))")
                return 1
            }
            defer { fuse_session_destroy(session) }
            fileSystem.attach(session: session)
            fileSystem.startJanitor()
            guard fuse_session_mount(session, configuration.mountpoint) == 0 else {
                Log.error("cannot mount FUSE on \(configuration.mountpoint) (see the message above)")
                return 1
            }
            tuneReadahead(configuration)
            if let ready = configuration.readyDescriptor {
                Launcher.reportReady(on: ready)
            }
            Log.info("mounted \(configuration.device) on \(configuration.mountpoint) as host "
                     + "'\(configuration.mountOptions.host.name)'\(configuration.readOnly ? " (read-only)" : "")")
            let status = loop(session, configuration)
            fuse_session_unmount(session)
            fileSystem.closeAll()
            return status
        }
    }

    /// Set when the session loop has returned (the signal watcher stops waking the main thread).
    private static let loopFinished = Atomic<Bool>(false)

    /// The session loop, ended by the kernel (unmount) or by a stop signal (one that came while
    /// mounting ends it at once).
    private static func loop(_ session: OpaquePointer, _ configuration: Configuration) -> Int32 {
        let target = SessionBox(raw: session)
        let mountpoint = configuration.mountpoint
        SignalWatcher.onStop { signal in
            Log.info("received signal \(signal): unmounting")
            writeBackKernelCache(mountpoint)
            fuse_session_exit(target.raw)
        }
        SignalWatcher.acceptWakeups()
        let result: Int32
        if configuration.singleThreaded {
            result = fuse_session_loop(session)
        } else {
            let loopConfiguration = fuse_loop_cfg_create()
            defer { fuse_loop_cfg_destroy(loopConfiguration) }
            fuse_loop_cfg_set_clone_fd(loopConfiguration, 1)
            fuse_loop_cfg_set_max_threads(loopConfiguration, UInt32(configuration.maxThreads))
            fuse_loop_cfg_set_idle_threads(loopConfiguration, UInt32(configuration.maxThreads))
            result = fuse_session_loop_mt(session, loopConfiguration)
        }
        loopFinished.store(true, ordering: .releasing)
        if result < 0 {
            Log.error("the FUSE session ended with an error: \(String(cString: strerror(-result)))")
            return 1
        }
        return 0
    }

    /// Asks the kernel to write back what it caches for the mount (`syncfs`) while the session
    /// still serves the WRITEs: once the session ends, dirty pages of the writeback cache are
    /// lost. Gives up after 10 s (a device that stopped answering must not keep the daemon).
    private static func writeBackKernelCache(_ mountpoint: String) {
        let done = Atomic<Bool>(false)
        let started = NativeThread.start {
            let descriptor = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if descriptor >= 0 {
                if cfuse_syncfs(descriptor) != 0 { Log.warning("writing back cached data: \(String(cString: strerror(errno)))") }
                close(descriptor)
            }
            done.store(true, ordering: .releasing)
        }
        guard started else { return }
        for _ in 0..<1000 where !done.load(ordering: .acquiring) { usleep(10_000) }
        if !done.load(ordering: .acquiring) { Log.warning("cached data not written back after 10 s; unmounting anyway") }
    }

    /// Raises the kernel readahead of the new mount (its bdi, named after its device number)
    /// to `read_ahead_kb`, so that sequential reads reach the daemon in 1 MiB requests. Runs
    /// before the loop answers INIT, which may only lower it.
    private static func tuneReadahead(_ configuration: Configuration) {
        guard configuration.readAheadKiB > 0,
              let mount = MountTable.entry(at: MountTable.canonical(configuration.mountpoint)) else { return }
        let path = "/sys/class/bdi/\(mount.device)/read_ahead_kb"
        let descriptor = open(path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            Log.debug("cannot set readahead (\(path)): \(String(cString: strerror(errno)))")
            return
        }
        defer { close(descriptor) }
        let text = Array("\(configuration.readAheadKiB)\n".utf8)
        if text.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) < 0 {
            Log.debug("cannot set readahead (\(path)): \(String(cString: strerror(errno)))")
        }
    }

    private struct SessionBox: @unchecked Sendable {
        let raw: OpaquePointer
    }
}
