import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension FuseSuite {
    /// POSIX behaviour of one mount: attributes, refusals, space, limits.
    @Suite("File semantics on one mount")
    struct SemanticsTests {
        @Test("chmod, chown, utimensat, truncate and stat")
        func attributes() throws {
            let volume = try TestVolume("attributes")
            let a = try volume.mount("A")
            let path = a.path("file")
            try Posix.writeFile(path, patternBytes(10_000, seed: 4))
            #expect(chmod(path, 0o640) == 0)
            #expect(chown(path, 1234, 5678) == 0)
            var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_500_000_000, tv_nsec: 987_654_321)]
            #expect(utimensat(-100, path, &times, 0) == 0)
            var info = try Posix.stat(path)
            #expect(info.st_mode == S_IFREG | 0o640)
            #expect(info.st_uid == 1234 && info.st_gid == 5678)
            #expect(info.st_atim.tv_sec == 1_000_000_000 && info.st_atim.tv_nsec == 123_456_789)
            #expect(info.st_mtim.tv_sec == 1_500_000_000 && info.st_mtim.tv_nsec == 987_654_321)
            #expect(info.st_nlink == 1)
            #expect(info.st_ino == 2, "the first file is slot 0: inode 2")
            // truncate by path (no handle) and through a handle
            #expect(truncate(path, 3 << 30) == 0)
            #expect(try Posix.stat(path).st_size == 3 << 30)
            let descriptor = try Posix.open(path, O_RDWR)
            #expect(ftruncate(descriptor, 77) == 0)
            #expect(futimens(descriptor, nil) == 0)
            info = try Posix.stat(path)
            #expect(info.st_size == 77)
            #expect(info.st_mtim.tv_sec >= Int(Date().timeIntervalSince1970) - 60, "futimens(NULL) sets now")
            try Posix.close(descriptor)
            #expect(try Posix.readFile(path) == Array(patternBytes(10_000, seed: 4)[0..<77]))
            // Attributes survive a remount (they are on the volume, not in a cache).
            #expect(try a.unmount() == 0)
            let again = try volume.mount("A2")
            let remounted = try Posix.stat(again.path("file"))
            #expect(remounted.st_mode == S_IFREG | 0o640 && remounted.st_uid == 1234 && remounted.st_size == 77)
            #expect(try again.unmount() == 0)
        }

        @Test("directories, links and special files are refused with EPERM; bad rename flags with EINVAL")
        func refusals() throws {
            let volume = try TestVolume("refusals")
            let a = try volume.mount("A")
            try Posix.writeFile(a.path("file"), [1, 2, 3])
            #expect(mkdir(a.path("dir"), 0o755) == -1 && errno == EPERM)
            #expect(symlink("file", a.path("link")) == -1 && errno == EPERM)
            #expect(link(a.path("file"), a.path("hard")) == -1 && errno == EPERM)
            #expect(mkfifo(a.path("fifo"), 0o644) == -1 && errno == EPERM)
            #expect(mknod(a.path("node"), S_IFCHR | 0o644, dev_t(0x0103)) == -1 && errno == EPERM)
            #expect(rmdir(a.path("file")) == -1 && errno == ENOTDIR)
            #expect(rmdir(a.path("missing")) == -1 && errno == ENOENT)
            #expect(renameat2(a.path("file"), a.path("other"), flags: RENAME_WHITEOUT) == -1 && errno == EINVAL)
            #expect(Posix.openError(a.path(String(repeating: "n", count: 128)), O_CREAT | O_WRONLY) == ENAMETOOLONG)
            #expect(Posix.openError(a.path(String(repeating: "n", count: 127)), O_CREAT | O_WRONLY) == nil)
            #expect(Posix.openError(a.path("file"), O_CREAT | O_EXCL | O_WRONLY) == EEXIST)
            #expect(try Posix.list(a.mountpoint) == ["file", String(repeating: "n", count: 127)].sorted())
            #expect(try a.unmount() == 0)
        }

        @Test("fallocate preallocates and punches holes; statfs reports the volume's space")
        func spaceAndHoles() throws {
            let volume = try TestVolume("space", size: "8G")
            let a = try volume.mount("A")
            var before = statvfs()
            #expect(statvfs(a.mountpoint, &before) == 0)
            #expect(before.f_bsize == 1 << 20 && before.f_namemax == 127)
            #expect(before.f_files == 255)
            let descriptor = try Posix.open(a.path("thick"), O_RDWR | O_CREAT)
            #expect(posix_fallocate(descriptor, 0, 64 << 20) == 0)
            #expect(try Posix.stat(a.path("thick")).st_size == 64 << 20)
            #expect(try Posix.stat(a.path("thick")).st_blocks >= (64 << 20) / 512)
            // statfs counts what the allocation bitmaps say on the device: committed within the
            // group-commit interval (1 s).
            var after = statvfs()
            #expect(eventually(timeout: 5) { statvfs(a.mountpoint, &after) == 0 && before.f_bfree - after.f_bfree >= 64 },
                    "64 blocks of 1 MiB taken: \(before.f_bfree) → \(after.f_bfree)")
            #expect(after.f_ffree == before.f_ffree - 1)
            // Preallocated blocks read as zeros; written data stays; a punched hole reads zeros
            // and gives the blocks back, keeping the size.
            #expect(try Posix.read(descriptor, count: 4096, at: 10 << 20) == [UInt8](repeating: 0, count: 4096))
            let data = patternBytes(8 << 20, seed: 5)
            try Posix.write(descriptor, data, at: 8 << 20)
            #expect(fallocate(descriptor, 0x03 /* PUNCH_HOLE | KEEP_SIZE */, off_t(9 << 20), off_t(4 << 20)) == 0)
            var expected = data
            expected.replaceSubrange((1 << 20)..<(5 << 20), with: [UInt8](repeating: 0, count: 4 << 20))
            #expect(try Posix.read(descriptor, count: 8 << 20, at: 8 << 20) == expected)
            #expect(try Posix.stat(a.path("thick")).st_size == 64 << 20)
            #expect(try Posix.stat(a.path("thick")).st_blocks <= (60 << 20) / 512 + 64)
            #expect(fallocate(descriptor, 0x08 /* COLLAPSE_RANGE */, 0, off_t(1 << 20)) == -1 && errno == EOPNOTSUPP)
            // While open for writing the kernel may hold data the daemon has not seen: SEEK_DATA
            // and SEEK_HOLE answer "all data".
            #expect(lseek(descriptor, 0, 3 /* SEEK_DATA */) == 0)
            #expect(lseek(descriptor, 0, 4 /* SEEK_HOLE */) == off_t(64 << 20))
            try Posix.close(descriptor)
            // Closed (written back): they see the written data between the holes.
            let reader = try Posix.open(a.path("thick"), O_RDONLY)
            #expect(lseek(reader, 0, 3 /* SEEK_DATA */) == off_t(8 << 20))
            #expect(lseek(reader, off_t(8 << 20), 4 /* SEEK_HOLE */) == off_t(9 << 20))
            #expect(lseek(reader, off_t(9 << 20), 3) == off_t(13 << 20))
            #expect(lseek(reader, off_t(16 << 20), 3) == -1 && errno == ENXIO)
            try Posix.close(reader)
            #expect(unlink(a.path("thick")) == 0)
            var freed = statvfs()
            #expect(eventually(timeout: 5) { statvfs(a.mountpoint, &freed) == 0 && freed.f_bfree == before.f_bfree },
                    "unlink returns every block: \(before.f_bfree) → \(freed.f_bfree)")
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("preallocating and punching again and again never runs out of pointer blocks")
        func preallocationCyclesDoNotLeak() throws {
            // Regression: each preallocation of several holes under one missing pointer block
            // reserved that block once per hole and gave none back; a 4 GiB volume ran out of
            // pointer blocks (ENOSPC) after about 140 cycles.
            let volume = try TestVolume("prealloc", size: "4G")
            let a = try volume.mount("A")
            let descriptor = try Posix.open(a.path("thick"), O_RDWR | O_CREAT)
            #expect(ftruncate(descriptor, off_t(3) << 30) == 0)
            var failure: String?
            for cycle in 0..<400 where failure == nil {
                // Beyond the 952 direct pointers, where blocks hang off pointer blocks.
                let offset = off_t(2) << 30 + off_t((cycle * 7919) % 512) << 20
                if fallocate(descriptor, 0, offset, off_t(4) << 20) != 0 {
                    failure = "preallocation \(cycle): \(String(cString: strerror(errno)))"
                } else if fallocate(descriptor, 0x03 /* PUNCH_HOLE | KEEP_SIZE */, offset, off_t(4) << 20) != 0 {
                    failure = "punch \(cycle): \(String(cString: strerror(errno)))"
                }
            }
            #expect(failure == nil, "\(failure ?? "")")
            try Posix.close(descriptor)
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("a writable shared mapping writes through to the volume")
        func sharedWritableMapping() throws {
            let volume = try TestVolume("mmap")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            let size = 6 << 20
            let descriptor = try Posix.open(a.path("mapped"), O_RDWR | O_CREAT)
            #expect(ftruncate(descriptor, off_t(size)) == 0)
            let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)
            try #require(map != MAP_FAILED, "mmap failed: \(String(cString: strerror(errno)))")
            let bytes = patternBytes(size, seed: 6)
            bytes.withUnsafeBytes { map!.copyMemory(from: $0.baseAddress!, byteCount: size) }
            #expect(msync(map, size, MS_SYNC) == 0)
            #expect(munmap(map, size) == 0)
            try Posix.close(descriptor)
            #expect(try Posix.readFile(b.path("mapped")) == bytes)
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
        }

        @Test("the 255-file limit gives ENOSPC, and removing a file makes room")
        func fileLimit() throws {
            let volume = try TestVolume("limit", size: "4G")
            let a = try volume.mount("A")
            for index in 0..<255 { try Posix.writeFile(a.path("f\(index)"), []) }
            #expect(Posix.openError(a.path("one-too-many"), O_CREAT | O_WRONLY) == ENOSPC)
            #expect(try Posix.list(a.mountpoint).count == 255)
            #expect(unlink(a.path("f100")) == 0)
            #expect(Posix.openError(a.path("one-more"), O_CREAT | O_WRONLY) == nil)
            #expect(try a.unmount() == 0)
        }
    }
}
