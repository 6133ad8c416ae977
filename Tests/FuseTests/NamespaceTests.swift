import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension FuseSuite {
    /// Many processes and hosts changing names at once: `nscheck` (Helpers/nscheck.c) against a
    /// model, and fsck after every run.
    @Suite("Namespace under concurrency")
    struct NamespaceTests {
        static func seed() -> UInt64 {
            if let text = ProcessInfo.processInfo.environment["NSCHECK_SEED"], let seed = UInt64(text) { return seed }
            return UInt64.random(in: 1...UInt64(UInt32.max))
        }

        @Test("two processes creating, writing and renaming a handful of files leave a clean volume")
        func createAndRenameChurn() throws {
            // Regression (issue 10): an open of a file by inode on one thread and its removal by
            // a replacing rename on another both "held" the file's lock (which is per host); the
            // removal freed the blocks and the open wrote its old descriptor back. fsck found
            // blocks used twice, nameless descriptors and unlinked files never freed.
            let checker = try CHelpers.executable("nscheck")
            let volume = try TestVolume("churn", size: "8G")
            let a = try volume.mount("A")
            let seed = Self.seed()
            let result = try run(checker, ["churn", "-p", "2", "-N", "600", "-n", "6", "-S", "\(seed)", a.mountpoint], timeout: 300)
            #expect(result.status == 0, "NSCHECK_SEED=\(seed): \(result)")
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("10,000 create/close/unlink cycles across 4 processes, then 255 creates succeed")
        func createUnlinkCyclesLeakNoSlot() throws {
            // Regression (issue 10): a file unlinked while the kernel's RELEASE of its last
            // handle was under way was never freed; after some thousand cycles every create
            // failed with ENOSPC until a remount.
            let checker = try CHelpers.executable("nscheck")
            let volume = try TestVolume("cycles", size: "4G", memory: true)
            let a = try volume.mount("A")
            let result = try run(checker, ["cycles", "-p", "4", "-N", "10000", a.mountpoint], timeout: 600)
            #expect(result.status == 0 && result.stdout.contains("filled the volume to 255 files"), "\(result)")
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("4 processes on each of 2 hosts, 20 runs of 5,000 operations: contents as modelled, fsck clean, no slot leaked")
        func twoHostStress() throws {
            let checker = try CHelpers.executable("nscheck")
            let volume = try TestVolume("nsstress", size: "4G", memory: true)
            let model = volume.scratch.file("model")
            let seed = Self.seed()
            // Short lock waits: an open that meets the other host's lock gives up (EBUSY, which
            // the model allows) after 20 ms instead of the default second.
            let options = ["lock_wait_ms=20"]
            for round in 0..<20 {
                let a = try volume.mount("A", options: options)
                let b = try volume.mount("B", options: options)
                // Each run starts by verifying the files the previous one left, after a remount.
                let result = try run(checker, ["run", "-q", "-m", model, "-S", "\(seed &+ UInt64(round))", "-N", "5000", "-p", "4",
                                               "-L", "65536", "-D", "50", a.mountpoint, b.mountpoint], timeout: 300)
                let passed = result.status == 0 && result.stdout.hasPrefix("OK 5000 operations")
                #expect(passed, "run \(round) (NSCHECK_SEED=\(seed) replays the series): \(result)\n--- A\n\(a.log)\n--- B\n\(b.log)")
                #expect(try a.unmount() == 0)
                #expect(try b.unmount() == 0)
                let fsck = try volume.check()
                #expect(fsck.status == 0, "fsck.vmfs -n after run \(round): \(fsck)")
                if !passed || fsck.status != 0 { return }
            }
            // The last run's files once more after a remount, then no slot may be missing.
            let a = try volume.mount("A")
            let verified = try run(checker, ["verify", "-q", "-m", model, a.mountpoint])
            #expect(verified.status == 0, "\(verified)")
            let filled = try run(checker, ["cycles", "-N", "0", "-p", "1", a.mountpoint])
            #expect(filled.status == 0 && filled.stdout.contains("filled the volume to 255 files"), "\(filled)")
            #expect(try a.unmount() == 0)
        }
    }
}
