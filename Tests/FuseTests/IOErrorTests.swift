import Foundation
import Testing

extension FuseSuite {
    /// Device errors: the volume lives on a file served by faultyfs (a small FUSE filesystem
    /// that fails chosen byte ranges with EIO), so vmfs-fuse meets real I/O errors.
    @Suite("Device I/O errors")
    struct IOErrorTests {
        /// A VMFS volume whose device is `<faultyfs mount>/disk.img`.
        final class FaultyDevice {
            let volume: TestVolume
            let process = Process()
            let mountpoint: String
            var device: String { mountpoint + "/disk.img" }
            var dataOffset: UInt64 { volume.dataOffset }

            init() throws {
                volume = try TestVolume("faulty", size: "4G")
                mountpoint = volume.scratch.directory("faulty")
                process.executableURL = URL(fileURLWithPath: try CHelpers.executable("faultyfs", libraries: ["fuse3"]))
                process.arguments = [volume.image, mountpoint, "-f", "-o", "auto_unmount"]
                process.standardError = FileHandle.nullDevice
                try process.run()
                guard eventually(timeout: 10, { MountTable.type(at: mountpoint) == "fuse.faultyfs" }) else {
                    throw HarnessError("faultyfs did not mount")
                }
            }

            /// Makes reads and writes of `[start, start + length)` of the device fail with EIO.
            func fail(from start: UInt64, length: UInt64) throws {
                try "\(start) \(length)\n".write(toFile: mountpoint + "/fault", atomically: false, encoding: .utf8)
            }

            func heal() throws {
                try "clear\n".write(toFile: mountpoint + "/fault", atomically: false, encoding: .utf8)
            }

            deinit {
                _ = try? run(Environment.fusermount ?? "/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 10)
                process.terminate()
                _ = waitForExit(process, timeout: 10)
            }
        }

        @Test("device errors reach the caller as EIO, without a hang; the mount works again once the device heals")
        func ioErrorsBecomeEIO() throws {
            let faulty = try FaultyDevice()
            let a = try FuseMount(device: faulty.device, hostID: "A", scratch: faulty.volume.scratch)
            let data = patternBytes(8 << 20, seed: 21)
            try Posix.writeFile(a.path("data"), data)
            try Posix.writeFile(a.path("small"), Array("inline".utf8))

            // File data unreadable and unwritable: EIO from read(2) and write(2), quickly.
            try faulty.fail(from: faulty.dataOffset, length: 1 << 40)
            let dd = Environment.executable("dd") ?? "/bin/dd"
            let read = try run(dd, ["if=\(a.path("data"))", "of=/dev/null", "bs=1M", "iflag=direct"], timeout: 30)
            #expect(read.status != 0 && read.stderr.contains("Input/output error"), "\(read)")
            let write = try run(dd, ["if=/dev/zero", "of=\(a.path("data"))", "bs=1M", "count=1", "conv=notrunc", "oflag=direct"], timeout: 30)
            #expect(write.status != 0 && write.stderr.contains("Input/output error"), "\(write)")
            // A write that needs a new block: the block it was given goes back (fsck below finds no leak).
            let extend = try run(dd, ["if=/dev/zero", "of=\(a.path("data"))", "bs=1M", "count=1", "seek=16", "conv=notrunc", "oflag=direct"], timeout: 30)
            #expect(extend.status != 0 && extend.stderr.contains("Input/output error"), "\(extend)")
            #expect(a.log.contains("error: read: pread failed: Input/output error"), "the daemon logs the device error: \(a.log)")
            // Metadata (names, attributes, small files in their descriptors) still works.
            #expect(try Posix.readFile(a.path("small")) == Array("inline".utf8))
            #expect(try Posix.list(a.mountpoint) == ["data", "small"])

            // The whole device failing: every request fails (EIO), none hangs.
            try faulty.fail(from: 0, length: 1 << 40)
            let cat = try run(Environment.executable("cat") ?? "/bin/cat", [a.path("small")], timeout: 30)
            #expect(cat.status != 0 && !cat.timedOut && cat.stderr.contains("Input/output error"), "\(cat)")
            let ls = try run(Environment.executable("ls") ?? "/bin/ls", [a.mountpoint], timeout: 30)
            #expect(ls.status != 0 && !ls.timedOut, "\(ls)")

            // Healed: everything as before, nothing lost, the daemon never stopped.
            try faulty.heal()
            #expect(eventually(timeout: 10) { (try? Posix.readFile(a.path("data"))) == data })
            #expect(a.process.isRunning)
            #expect(try a.unmount() == 0)
            let fsck = try faulty.volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }
    }
}
