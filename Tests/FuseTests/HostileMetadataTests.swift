import Foundation
import Testing
import VMFSCore
import VMFSTestSupport
#if canImport(Glibc)
import Glibc
#endif

extension FuseSuite {
    /// Metadata another host (or a damaged LUN) wrote with valid checksums but absurd values,
    /// met through a real mount: the daemon answers with an error and keeps serving, and no
    /// write lands outside the volume or in another file.
    @Suite("Hostile metadata on a mount")
    struct HostileMetadataTests {
        private static let unwritten: UInt32 = 1 << 31
        private static let directEntry0 = 272  // docs/FORMAT.md §6

        private func slot(of path: String) throws -> Int { Int(try Posix.stat(path).st_ino) - 2 }

        private func imageSize(_ path: String) throws -> UInt64 {
            (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
        }

        /// Writes through the kernel and makes it durable; the errno of the first step that failed.
        private func writeAndSync(_ path: String) throws -> Int32? {
            let descriptor = try Posix.open(path, O_RDWR)
            defer { close(descriptor) }
            do { try Posix.write(descriptor, patternBytes(64 << 10, seed: 1), at: 0) } catch { return error.code }
            return fsync(descriptor) == 0 ? nil : errno
        }

        @Test("a preallocated entry past the volume, at its block count or in another file is never written")
        func hostileUnwrittenEntries() throws {
            let volume = try TestVolume("hostile-map", size: "2G")
            let maker = try volume.mount("maker")
            try Posix.writeFile(maker.path("victim"), patternBytes(1 << 20, seed: 5))
            let thick = try Posix.open(maker.path("thick"), O_RDWR | O_CREAT)
            #expect(fallocate(thick, 0, 0, 2 << 20) == 0)
            close(thick)
            let (victimSlot, thickSlot) = (try slot(of: maker.path("victim")), try slot(of: maker.path("thick")))
            #expect(try maker.unmount() == 0)

            let attacker = try FieldRewriter(path: volume.image)
            let layout = attacker.header.layout
            let victimBlock = try attacker.field(.fileDescriptor(slot: victimSlot), at: Self.directEntry0, as: UInt32.self)
            let size = try imageSize(volume.image)
            let backup = try attacker.read(.backupVolumeHeader)
            for (round, bad) in [UInt32(layout.totalBlocks + 1000), UInt32(layout.totalBlocks), victimBlock].enumerated() {
                try attacker.rewrite(.fileDescriptor(slot: thickSlot), field: Self.directEntry0, to: bad | Self.unwritten)
                let host = try volume.mount("user\(round)")
                let failure = try writeAndSync(host.path("thick"))
                #expect(failure == EIO || failure == EUCLEAN, "entry \(bad): \(String(describing: failure))")
                #expect(host.log.contains("file block 0") && host.log.contains("\(bad)"), "\(host.log)")
                #expect(try Posix.readFile(host.path("victim")) == patternBytes(1 << 20, seed: 5))
                #expect(try host.unmount() == 0, "the daemon kept serving")
                #expect(try imageSize(volume.image) == size, "entry \(bad): the image grew")
                #expect(try attacker.read(.backupVolumeHeader) == backup, "entry \(bad): the backup header changed")
            }
        }

        @Test("absurd sizes and counts: errors for that file, the daemon keeps serving, fsck repairs")
        func hostileDescriptorFields() throws {
            let volume = try TestVolume("hostile-fields", size: "2G")
            let maker = try volume.mount("maker")
            let names = ["size-2^63", "size-near-2^64", "counts-inline", "counts-blocks", "healthy"]
            for (i, name) in names.enumerated() {
                try Posix.writeFile(maker.path(name), patternBytes(name.contains("inline") ? 100 : 2 << 20, seed: UInt64(i)))
            }
            let slots = try names.map { try slot(of: maker.path($0)) }
            #expect(try maker.unmount() == 0)

            let attacker = try FieldRewriter(path: volume.image)
            try attacker.rewrite(.fileDescriptor(slot: slots[0]), field: 56, to: UInt64(1) << 63)
            try attacker.rewrite(.fileDescriptor(slot: slots[1]), field: 56, to: UInt64.max - 4)
            for slot in slots[2...3] {
                try attacker.rewrite(.fileDescriptor(slot: slot), field: 64, to: UInt64.max)
                try attacker.rewrite(.fileDescriptor(slot: slot), field: 72, to: UInt64.max)
            }
            let host = try volume.mount("user")
            for name in names.dropLast() {
                let path = host.path(name)
                var info = Glibc.stat()
                if stat(path, &info) != 0 { #expect(errno == EUCLEAN, "\(name): \(errno)") }
                if let descriptor = try? Posix.open(path, O_RDONLY) {
                    // Whatever the answer, asking must not take the daemon down.
                    _ = lseek(descriptor, 0, 4 /* SEEK_HOLE */)
                    _ = lseek(descriptor, 0, 3 /* SEEK_DATA */)
                    close(descriptor)
                }
                #expect(host.process.isRunning && host.isMounted, "\(name) took the daemon down: \(host.log)")
            }
            #expect(try Posix.readFile(host.path("healthy")) == patternBytes(2 << 20, seed: 4))
            #expect(try host.unmount() == 0)

            #expect(try volume.check().status == 4)
            #expect(try run(Environment.product("fsck.vmfs"), ["-y", volume.image]).status == 1)
            #expect(try volume.check().status == 0)
            let after = try volume.mount("after")
            #expect(try Posix.stat(after.path("size-2^63")).st_size == 2 << 20, "the size ends with the last mapped block")
            #expect(try Posix.readFile(after.path("size-near-2^64")) == patternBytes(2 << 20, seed: 1))
            // An inline file's st_blocks counts its bytes (100: one sector), whatever its counts say.
            #expect(try Posix.stat(after.path("counts-inline")).st_blocks == 1)
            #expect(try after.unmount() == 0)
            let repaired = try VolumeInspector(path: volume.image).files().first { $0.name == "counts-inline" }
            #expect(repaired?.allocatedBytes == 0, "fsck set the inline file's block counts back to 0")
        }

        @Test("a stop signal while mounting gives the mount up at once")
        func stopWhileMounting() throws {
            let volume = try TestVolume("stop-mounting", size: "2G")
            // A host dies holding the volume; its slot then claims the longest renew interval
            // allowed (30 s), so that mounting again as that host watches it for 45 s.
            let first = try volume.mount("victim")
            first.signal(SIGKILL)
            #expect(waitForExit(first.process, timeout: 10))
            let slot = try #require(try volume.hosts().first { $0.hostName == "victim" }?.slot)
            try FieldRewriter(path: volume.image).rewrite(.heartbeatSlot(slot), field: 140, to: UInt32(30_000))

            let mountpoint = volume.scratch.directory("mnt-again")
            let log = volume.scratch.file("again.log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: Environment.product("vmfs-fuse"))
            daemon.arguments = ["-f", "-o", "host_id=victim", volume.image, mountpoint]
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            daemon.standardError = output
            daemon.standardOutput = output
            try daemon.run()
            try output.close()
            defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }
            Thread.sleep(forTimeInterval: 1.5)
            #expect(daemon.isRunning, "still watching its previous incarnation's slot")
            let stopped = Date()
            kill(daemon.processIdentifier, SIGTERM)
            #expect(waitForExit(daemon, timeout: 10))
            #expect(Date().timeIntervalSince(stopped) < 3, "the mount ignored SIGTERM")
            #expect(daemon.terminationStatus == 1)
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains("interrupted"), "\(text)")
        }
    }
}
