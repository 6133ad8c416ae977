import Foundation
import Testing
import VMFSCore

extension FuseSuite {
    /// Starting, detaching, refusing, stopping and dying: the daemon as a process.
    @Suite("Daemon lifecycle")
    struct LifecycleTests {
        @Test("a non-VMFS device, a missing device or mount point and a busy mount point fail clearly, writing nothing")
        func startupErrors() throws {
            let scratch = Scratch("errors")
            let daemon = Environment.product("vmfs-fuse")
            let mountpoint = scratch.directory("mnt")
            let junk = scratch.file("junk.img")
            try Data(patternBytes(8 << 20, seed: 11)).write(to: URL(fileURLWithPath: junk))
            let before = try fingerprint(junk)
            // Detached (the default) and foreground: the error reaches the caller either way.
            for foreground in [false, true] {
                let result = try run(daemon, (foreground ? ["-f"] : []) + ["--host-id", "E", junk, mountpoint], timeout: 60)
                #expect(result.status == 1, "\(result)")
                #expect(result.stderr.contains("no VMFS volume"), "\(result)")
            }
            #expect(try fingerprint(junk) == before, "a non-VMFS device is left untouched")

            let missing = try run(daemon, ["--host-id", "E", scratch.file("absent.img"), mountpoint], timeout: 60)
            #expect(missing.status == 1 && missing.stderr.contains("does not exist"), "\(missing)")
            let noDirectory = try run(daemon, ["--host-id", "E", junk, scratch.file("no-such-dir")], timeout: 60)
            #expect(noDirectory.status == 1 && noDirectory.stderr.contains("does not exist"), "\(noDirectory)")
            let badOption = try run(daemon, ["-o", "host_id=E,frobnicate", junk, mountpoint], timeout: 60)
            #expect(badOption.status == 2 && badOption.stderr.contains("unknown mount option 'frobnicate'"), "\(badOption)")

            // A mount point already in use: refused before the second volume is touched.
            let first = try TestVolume("busy-first")
            let second = try TestVolume("busy-second")
            let mounted = try first.mount("A")
            let secondBefore = try fingerprint(second.image)
            let busy = try run(daemon, ["--host-id", "B", second.image, mounted.mountpoint], timeout: 60)
            #expect(busy.status == 1 && busy.stderr.contains("is busy"), "\(busy)")
            #expect(try fingerprint(second.image) == secondBefore, "the second volume was not written (no heartbeat slot claimed)")
            #expect(try second.liveHosts() == [])
            #expect(mounted.isMounted)
            #expect(try mounted.unmount() == 0)
            #expect(MountTable.isMounted(mountpoint) == false)
        }

        @Test("without -f the daemon returns once mounted; umount(8) stops it and releases the volume")
        func detachesAfterMount() throws {
            let volume = try TestVolume("detach")
            let mountpoint = volume.scratch.directory("mnt")
            let started = try run(Environment.product("vmfs-fuse"), ["--host-id", "D", volume.image, mountpoint], timeout: 60)
            #expect(started.status == 0, "\(started)")
            #expect(MountTable.isMounted(mountpoint), "mounted by the time the command returned")
            let pid = try #require(try volume.hosts().first { $0.hostName == "D" && $0.state != "free" }?.pid)
            try Posix.writeFile(mountpoint + "/file", Array("detached".utf8))
            let unmounted = try run(Environment.executable("umount") ?? "/bin/umount", [mountpoint])
            #expect(unmounted.status == 0, "\(unmounted)")
            #expect(eventually(timeout: 15) { kill(pid_t(pid), 0) != 0 && errno == ESRCH }, "the daemon exits after umount")
            #expect(try volume.liveHosts() == [])
            #expect(try volume.locks() == [])
        }

        @Test("mount -t fuse.vmfs and an fstab line work through the installed mount helper")
        func mountHelper() throws {
            let volume = try TestVolume("helper")
            let helper = Environment.packageRoot.appendingPathComponent("Tools/scripts/mount.fuse.vmfs").path
            let installed = try run(helper, ["--install", Environment.product("vmfs-fuse")])
            try #require(installed.status == 0, "installing /sbin/mount.fuse.vmfs: \(installed)")
            let mount = Environment.executable("mount") ?? "/bin/mount"
            let umount = Environment.executable("umount") ?? "/bin/umount"
            let mountpoint = volume.scratch.directory("mnt")

            let mounted = try run(mount, ["-t", "fuse.vmfs", volume.image, mountpoint, "-o", "host_id=H1,noatime"], timeout: 60)
            #expect(mounted.status == 0, "\(mounted)")
            #expect(MountTable.type(at: mountpoint) == "fuse.vmfs")
            try Posix.writeFile(mountpoint + "/through-mount", Array("mount(8)".utf8))
            #expect(try volume.liveHosts() == ["H1"])
            #expect(try run(umount, [mountpoint]).status == 0)
            #expect(eventually(timeout: 15) { (try? volume.liveHosts()) == [] }, "umount stops the daemon and frees its slot")

            let fstab = volume.scratch.file("fstab")
            try "\(volume.image) \(mountpoint) fuse.vmfs host_id=H2,noauto,nofail,_netdev,x-systemd.automount 0 0\n"
                .write(toFile: fstab, atomically: true, encoding: .utf8)
            let fromFstab = try run(mount, ["--fstab", fstab, mountpoint], timeout: 60)
            #expect(fromFstab.status == 0, "\(fromFstab)")
            #expect(try Posix.readFile(mountpoint + "/through-mount") == Array("mount(8)".utf8))
            #expect(try volume.liveHosts() == ["H2"])
            #expect(try run(umount, [mountpoint]).status == 0)
            #expect(eventually(timeout: 15) { (try? volume.liveHosts()) == [] })

            // mount(8) reports the daemon's error and exit status.
            let junk = volume.scratch.file("junk.img")
            try Data(count: 16 << 20).write(to: URL(fileURLWithPath: junk))
            let refused = try run(mount, ["-t", "fuse.vmfs", junk, mountpoint, "-o", "host_id=H3"], timeout: 60)
            #expect(refused.status != 0 && refused.stderr.contains("no VMFS volume"), "\(refused)")
            #expect(!MountTable.isMounted(mountpoint))
        }

        @Test("SIGTERM and SIGINT unmount cleanly, even with a file open for writing", arguments: [SIGTERM, SIGINT])
        func stopSignalUnmountsCleanly(signal: Int32) throws {
            let volume = try TestVolume("signal-\(signal)")
            let a = try volume.mount("A")
            let data = patternBytes(3 << 20, seed: 12)
            let descriptor = try Posix.open(a.path("open.vmdk"), O_RDWR | O_CREAT)
            try Posix.write(descriptor, data, at: 0)
            #expect(try volume.locks().contains { $0.object == "file 'open.vmdk'" && $0.mode == "exclusive" })
            a.signal(signal)
            #expect(waitForExit(a.process, timeout: 15), "the daemon exits on signal \(signal)")
            #expect(a.process.terminationStatus == 0, "\(a.log)")
            close(descriptor)
            #expect(eventually(timeout: 5) { !a.isMounted })
            #expect(a.log.contains("received signal \(signal)"))
            #expect(try volume.locks() == [], "every lock released")
            #expect(try volume.liveHosts() == [], "heartbeat slot released")
            // What was written before the signal is on the volume.
            let b = try volume.mount("B")
            #expect(try Posix.readFile(b.path("open.vmdk")) == data)
            #expect(try b.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("after SIGKILL of a host, another host recovers it and takes over its file")
        func killedHostIsRecovered() throws {
            let volume = try TestVolume("sigkill")
            // The hidden timing options: this pair publishes a 2 s dead interval (the volume says 5 s).
            let timing = Timing.fast.daemonFlags
            let a = try volume.mount("A", arguments: timing)
            let b = try volume.mount("B", options: ["lock_wait_ms=10000"], arguments: timing)
            let data = patternBytes(5 << 20, seed: 13)
            let descriptor = try Posix.open(a.path("vm.vmdk"), O_RDWR | O_CREAT)
            try Posix.write(descriptor, data, at: 0)
            #expect(fsync(descriptor) == 0)
            #expect(try volume.locks().first { $0.object == "file 'vm.vmdk'" }?.holders.map(\.hostName) == ["A"])
            let started = Date()
            a.signal(SIGKILL)
            #expect(waitForExit(a.process, timeout: 10))
            close(descriptor)
            // B's open waits while A's heartbeat goes stale, recovers A, then gets the lock.
            let taken = try Posix.open(b.path("vm.vmdk"), O_RDWR)
            let waited = Date().timeIntervalSince(started)
            #expect(waited < 8, "taking a killed host's lock took \(waited) s")
            #expect(try Posix.read(taken, count: data.count, at: 0) == data, "data A fsynced before it died")
            try Posix.close(taken)
            #expect(try volume.liveHosts() == ["B"], "A's slot was recovered")
            #expect(eventually(timeout: 30) { !a.isMounted }, "auto_unmount removed A's dead mount")
            #expect(try b.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }
    }
}

/// The kernel's mount table, as the tests see it.
enum MountTable {
    static func entry(at path: String) -> [Substring]? {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").map { $0.split(separator: " ") }.last { $0.count > 4 && $0[4] == path }
    }

    static func isMounted(_ path: String) -> Bool { entry(at: path) != nil }

    static func type(at path: String) -> String? {
        guard let fields = entry(at: path), let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { return nil }
        return String(fields[dash + 1])
    }
}
