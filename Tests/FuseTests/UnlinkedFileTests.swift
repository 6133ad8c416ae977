import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension FuseSuite {
    /// POSIX behaviour around unlinked and replaced files, the root directory's attributes and
    /// the space small files use (issue 10, found by independent test suites).
    @Suite("Unlinked files and the root directory")
    struct UnlinkedFileTests {
        @Test("a read-only descriptor closes without error after its file is unlinked or replaced by rename")
        func closeAfterUnlinkOrReplace() throws {
            // Regression: with the writeback cache the kernel writes the unlinked file's change
            // time back at once; the daemon refused (the file was gone from the namespace), and
            // the kernel turned that into EIO from close(2).
            let volume = try TestVolume("close-unlinked")
            let a = try volume.mount("A")
            try Posix.writeFile(a.path("doc"), Array("old".utf8))
            let reader = try Posix.open(a.path("doc"), O_RDONLY)
            #expect(unlink(a.path("doc")) == 0)
            #expect(try Posix.read(reader, count: 10, at: 0) == Array("old".utf8))
            #expect(Posix.errorOf(close(reader)) == nil, "close of a read-only descriptor of an unlinked file")
            // The write-a-temporary-then-rename pattern.
            try Posix.writeFile(a.path("config"), Array("version 1".utf8))
            let old = try Posix.open(a.path("config"), O_RDONLY)
            try Posix.writeFile(a.path("config.tmp"), Array("version 2".utf8))
            #expect(rename(a.path("config.tmp"), a.path("config")) == 0)
            #expect(try Posix.read(old, count: 20, at: 0) == Array("version 1".utf8))
            #expect(Posix.errorOf(close(old)) == nil, "close of a read-only descriptor of a replaced file")
            #expect(try Posix.readFile(a.path("config")) == Array("version 2".utf8))
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("syncfs after an unlink succeeds, and the daemon logs no error")
        func syncfsAfterUnlink() throws {
            let volume = try TestVolume("syncfs")
            let a = try volume.mount("A")
            for index in 0..<3 {
                try Posix.writeFile(a.path("f\(index)"), patternBytes(100 + index * 5000, seed: UInt64(index)))
                #expect(unlink(a.path("f\(index)")) == 0)
            }
            let directory = try Posix.open(a.mountpoint, O_RDONLY | O_DIRECTORY)
            #expect(Posix.errorOf(syncfs(directory)) == nil, "syncfs: \(String(cString: strerror(errno)))")
            try Posix.close(directory)
            #expect(!a.log.contains("no longer exists"), "\(a.log)")
            #expect(!a.log.contains("error"), "\(a.log)")
            #expect(try a.unmount() == 0)
        }

        @Test("fchmod, fchown and futimens work on an open, unlinked file")
        func attributesOfAnOpenUnlinkedFile() throws {
            let volume = try TestVolume("unlinked-attributes")
            let a = try volume.mount("A")
            let descriptor = try Posix.open(a.path("scratch"), O_RDWR | O_CREAT)
            try Posix.write(descriptor, patternBytes(6000, seed: 9), at: 0)
            #expect(unlink(a.path("scratch")) == 0)
            #expect(Posix.errorOf(fchmod(descriptor, 0o600)) == nil, "fchmod: \(String(cString: strerror(errno)))")
            #expect(Posix.errorOf(fchown(descriptor, 4321, 8765)) == nil, "fchown: \(String(cString: strerror(errno)))")
            #expect(ftruncate(descriptor, 3000) == 0)
            var times = [timespec(tv_sec: 1_200_000_000, tv_nsec: 5), timespec(tv_sec: 1_300_000_000, tv_nsec: 7)]
            #expect(Posix.errorOf(futimens(descriptor, &times)) == nil, "futimens: \(String(cString: strerror(errno)))")
            var info = Glibc.stat()
            #expect(fstat(descriptor, &info) == 0)
            #expect(info.st_mode == S_IFREG | 0o600 && info.st_uid == 4321 && info.st_gid == 8765)
            #expect(info.st_mtim.tv_sec == 1_300_000_000 && info.st_size == 3000)
            #expect(try Posix.read(descriptor, count: 4000, at: 0) == Array(patternBytes(6000, seed: 9)[0..<3000]))
            try Posix.close(descriptor)
            #expect(try Posix.list(a.mountpoint).isEmpty)
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0 && fsck.stdout.contains("0 files"), "the unlinked file is freed at its last close: \(fsck)")
        }

        @Test("the root directory's mtime and ctime change on create, rename and unlink, on every host")
        func rootTimesFollowTheNames() throws {
            let volume = try TestVolume("root-times")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            func times(_ path: String) throws -> (Int64, Int64) {
                let info = try Posix.stat(path)
                return (Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                        Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))
            }
            var last = try times(a.mountpoint)
            for (step, change) in [("create", { try Posix.writeFile(a.path("x"), [1]) }),
                                   ("rename", { #expect(rename(a.path("x"), a.path("y")) == 0) }),
                                   ("unlink", { #expect(unlink(a.path("y")) == 0) })] as [(String, () throws -> Void)] {
                usleep(2000)
                try change()
                let now = try times(a.mountpoint)
                #expect(now.0 > last.0 && now.1 > last.1, "\(step) must advance the root's mtime and ctime: \(last) → \(now)")
                last = now
            }
            // The other host sees the same times once its cached root attributes expire (1 s).
            #expect(eventually(timeout: 3) { (try? times(b.mountpoint)).map { $0 == last } ?? false },
                    "host B: \(String(describing: try? times(b.mountpoint))), A: \(last)")
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
        }

        @Test("chmod and chown of the root are kept on the volume: other hosts and remounts see them, users can create files")
        func rootModeAndOwner() throws {
            let volume = try TestVolume("root-owner")
            let a = try volume.mount("A", options: ["allow_other"])
            let b = try volume.mount("B")
            let user = "/usr/bin/setpriv"
            let asUser = [ "--reuid=1000", "--regid=1000", "--clear-groups", "/bin/sh", "-c", "echo hi > \(a.path("mine"))"]
            if access(user, X_OK) == 0 {
                #expect(try run(user, asUser).status != 0, "the root is 0755 root:root by default: a user cannot create a file")
            }
            #expect(try Posix.stat(a.mountpoint).st_mode == S_IFDIR | 0o755)
            #expect(chmod(a.mountpoint, 0o1777) == 0, "chmod of the root: \(String(cString: strerror(errno)))")
            #expect(chown(a.mountpoint, 1000, 1000) == 0, "chown of the root: \(String(cString: strerror(errno)))")
            var info = try Posix.stat(a.mountpoint)
            #expect(info.st_mode == S_IFDIR | 0o1777 && info.st_uid == 1000 && info.st_gid == 1000)
            if access(user, X_OK) == 0 {
                let created = try run(user, asUser)
                #expect(created.status == 0, "a user creates a file in the 1777 root: \(created)")
                #expect(try Posix.stat(a.path("mine")).st_uid == 1000)
            }
            #expect(eventually(timeout: 3) { (try? Posix.stat(b.mountpoint)).map { $0.st_mode == S_IFDIR | 0o1777 && $0.st_uid == 1000 } ?? false },
                    "host B sees the root's new mode and owner")
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
            let again = try volume.mount("A2")
            info = try Posix.stat(again.mountpoint)
            #expect(info.st_mode == S_IFDIR | 0o1777 && info.st_uid == 1000 && info.st_gid == 1000, "kept across a remount")
            #expect(try again.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("st_blocks counts the bytes of small files kept inline")
        func smallFilesUseBlocks() throws {
            let volume = try TestVolume("inline-blocks")
            let a = try volume.mount("A")
            try Posix.writeFile(a.path("tiny"), [7])
            try Posix.writeFile(a.path("small"), patternBytes(3000, seed: 3))
            try Posix.writeFile(a.path("empty"), [])
            #expect(try Posix.stat(a.path("tiny")).st_blocks == 1)
            #expect(try Posix.stat(a.path("small")).st_blocks == 6, "3000 bytes: 6 blocks of 512")
            #expect(try Posix.stat(a.path("empty")).st_blocks == 0)
            #expect(try a.unmount() == 0)
        }
    }
}
