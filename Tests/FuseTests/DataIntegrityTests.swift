import Foundation
import Testing

extension FuseSuite {
    /// Data checkers: random operations against a model, fio verify, and qemu-img as a client.
    @Suite("Data integrity through the mount")
    struct DataIntegrityTests {
        /// The seed of a randomized run: `FSX_SEED` to replay one, else new each run (printed).
        static func seed() -> UInt64 {
            if let text = ProcessInfo.processInfo.environment["FSX_SEED"], let seed = UInt64(text) { return seed }
            return UInt64.random(in: 1...UInt64(UInt32.max))
        }

        @Test("random writes, reads, truncates, punches, mmap and fsync up to 6 GiB match a model, on both hosts")
        func randomOperationsMatchTheModel() throws {
            let checker = try CHelpers.executable("fsxcheck")
            let volume = try TestVolume("fsx", size: "32G")
            let a = try volume.mount("A")
            // B answers reads by splicing from the device: its verify pass checks that path too.
            let b = try volume.mount("B", options: ["splice_read"])
            let seed = Self.seed()
            let operations = "6000"
            let common = ["-q", "-N", operations, "-S", "\(seed)", "-l", "\(6 << 30)", "-o", "\(256 << 10)"]
            let run1 = try run(checker, common + [a.path("fsx.bin")], timeout: 600)
            #expect(run1.status == 0, "fsxcheck on A (seed \(seed), replay with FSX_SEED=\(seed)): \(run1)")
            #expect(run1.stdout.hasPrefix("OK \(operations) operations"), "\(run1.stdout)")
            // The other host rebuilds the same model without I/O and reads the whole file.
            let verify = try run(checker, common + ["-V", b.path("fsx.bin")], timeout: 600)
            #expect(verify.status == 0, "verify on B (seed \(seed)): \(verify)")
            // A second file with no mmap, written on B this time, checked on A.
            let run2 = try run(checker, ["-q", "-m", "-N", "3000", "-S", "\(seed &+ 1)", "-l", "\(2 << 30)", b.path("plain.bin")],
                               timeout: 600)
            #expect(run2.status == 0, "fsxcheck -m on B (seed \(seed &+ 1)): \(run2)")
            let verify2 = try run(checker, ["-q", "-m", "-N", "3000", "-S", "\(seed &+ 1)", "-l", "\(2 << 30)", "-V", a.path("plain.bin")],
                                  timeout: 600)
            #expect(verify2.status == 0, "verify on A (seed \(seed &+ 1)): \(verify2)")
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("four checkers on four files of one host at once: allocations and frees of different files race")
        func concurrentCheckersOnOneHost() throws {
            // Regression: a block freed by one file's truncate or punch could be handed to another
            // file before the free was committed, and the free's discard then zeroed its data.
            let checker = try CHelpers.executable("fsxcheck")
            let volume = try TestVolume("fsx-parallel", size: "32G")
            let a = try volume.mount("A")
            let seed = Self.seed()
            let processes = try (0..<4).map { index -> Process in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: checker)
                process.arguments = ["-q", "-N", "6000", "-S", "\(seed &+ UInt64(index))", "-l", "\(2 << 30)",
                                     a.path("parallel-\(index)")]
                let log = volume.scratch.file("checker-\(index).log")
                _ = FileManager.default.createFile(atPath: log, contents: nil)
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
                process.standardOutput = handle
                process.standardError = handle
                try process.run()
                return process
            }
            for (index, process) in processes.enumerated() {
                #expect(waitForExit(process, timeout: 180), "checker \(index) did not finish (a hang)")
                let log = (try? String(contentsOfFile: volume.scratch.file("checker-\(index).log"), encoding: .utf8)) ?? ""
                let daemonErrors = a.log.split(separator: "\n").filter { $0.contains("error") }.suffix(20).joined(separator: "\n")
                #expect(process.terminationStatus == 0,
                        "checker \(index) (seed \(seed &+ UInt64(index))): \(log)\n--- daemon errors\n\(daemonErrors)")
            }
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("fio writes a 2 GiB file with crc32c verify on A; B verifies it; random writes verify; fsck clean")
        func fioVerify() throws {
            guard let fio = Environment.executable("fio") else {
                Issue.record("fio is not installed (Tools/scripts/setup.sh installs it)")
                return
            }
            let volume = try TestVolume("fio", size: "16G")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            let sequential = ["--name=sequential", "--size=2G", "--bs=1M", "--rw=write", "--ioengine=libaio", "--iodepth=8",
                              "--direct=1", "--verify=crc32c", "--verify_fatal=1", "--randseed=42", "--verify_state_save=0"]
            let written = try run(fio, sequential + ["--filename=\(a.path("fio.dat"))"], timeout: 600)
            #expect(written.status == 0 && written.stdout.contains("err= 0"), "fio write+verify on A: \(written)")
            // Same job description, verify only, through the other host's mount (buffered reads).
            let checked = try run(fio, sequential.filter { $0 != "--direct=1" } + ["--verify_only", "--filename=\(b.path("fio.dat"))"],
                                  timeout: 600)
            #expect(checked.status == 0 && checked.stdout.contains("err= 0"), "fio verify_only on B: \(checked)")
            // Random mixed-size writes through the page cache into the same file, verified as they go.
            let random = ["--name=random", "--filename=\(b.path("fio.dat"))", "--size=2G", "--io_size=256M", "--bsrange=4k-256k",
                          "--rw=randwrite", "--ioengine=psync", "--verify=crc32c", "--verify_fatal=1", "--verify_backlog=64",
                          "--randseed=7", "--verify_state_save=0"]
            let randomResult = try run(fio, random, timeout: 600)
            #expect(randomResult.status == 0 && randomResult.stdout.contains("err= 0"), "fio randwrite+verify on B: \(randomResult)")
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "fsck.vmfs -n after fio: \(fsck)")
        }

        @Test("qemu-img create, info, convert and compare work on files in the mount")
        func qemuImg() throws {
            guard let qemuImg = Environment.executable("qemu-img") else {
                Issue.record("qemu-img is not installed (Tools/scripts/setup.sh installs qemu-utils)")
                return
            }
            let volume = try TestVolume("qemu", size: "16G")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            let created = try run(qemuImg, ["create", "-f", "raw", a.path("disk.raw"), "4G"])
            #expect(created.status == 0, "\(created)")
            let info = try run(qemuImg, ["info", "--output=json", a.path("disk.raw")])
            #expect(info.status == 0 && info.stdout.contains("\"virtual-size\": 4294967296") && info.stdout.contains("\"format\": \"raw\""),
                    "\(info)")
            // Scattered data in the sparse image, written through the mount.
            let descriptor = try Posix.open(a.path("disk.raw"), O_WRONLY)
            for (index, offset) in [0, 5 << 20, 1 << 30, (3 << 30) + 12345].enumerated() {
                try Posix.write(descriptor, patternBytes(3 << 20, seed: UInt64(index + 10)), at: UInt64(offset))
            }
            try Posix.close(descriptor)
            let toQcow = try run(qemuImg, ["convert", "-O", "qcow2", a.path("disk.raw"), a.path("disk.qcow2")])
            #expect(toQcow.status == 0, "\(toQcow)")
            let qcowInfo = try run(qemuImg, ["info", "--output=json", b.path("disk.qcow2")])
            #expect(qcowInfo.stdout.contains("\"format\": \"qcow2\"") && qcowInfo.stdout.contains("\"virtual-size\": 4294967296"),
                    "\(qcowInfo)")
            let checkQcow = try run(qemuImg, ["check", b.path("disk.qcow2")])
            #expect(checkQcow.status == 0, "\(checkQcow)")
            // Back to raw on the other host, with O_DIRECT (cache=none) on the way out.
            let toRaw = try run(qemuImg, ["convert", "-t", "none", "-O", "raw", b.path("disk.qcow2"), b.path("copy.raw")])
            #expect(toRaw.status == 0, "\(toRaw)")
            let compared = try run(qemuImg, ["compare", a.path("disk.raw"), a.path("copy.raw")])
            #expect(compared.status == 0 && compared.stdout.contains("identical"), "\(compared)")
            // The copy stayed sparse: SEEK_DATA/SEEK_HOLE let qemu skip the holes.
            #expect(try Posix.stat(a.path("copy.raw")).st_blocks * 512 < 64 << 20)
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }
    }
}
