import Foundation
import Testing
import VMFSCore
#if canImport(Glibc)
import Glibc
#endif

extension FuseSuite {
    /// Two hosts (two daemons with different host ids) mounting one volume.
    @Suite("Two hosts on one volume")
    struct ClusterMountTests {
        @Test("data written and closed on host A reads back identical on host B at once")
        func writeOnAReadOnB() throws {
            let volume = try TestVolume("write-a-read-b")
            let a = try volume.mount("A")
            let b = try volume.mount("B", options: ["splice_read"])
            // Larger than one 1 MiB block, unaligned size; plus a small (inline) file.
            let big = patternBytes(37 << 20 | 12345, seed: 1)
            let small = Array("written on A\n".utf8)
            try Posix.writeFile(a.path("big.bin"), big)
            try Posix.writeFile(a.path("small.txt"), small)
            #expect(try Posix.readFile(b.path("big.bin")) == big)
            #expect(try Posix.readFile(b.path("small.txt")) == small)
            #expect(try Posix.stat(b.path("big.bin")).st_size == off_t(big.count))

            // Overwrite in the middle on B; A sees it at once, size unchanged.
            let patch = patternBytes(3 << 20, seed: 2)
            let descriptor = try Posix.open(b.path("big.bin"), O_WRONLY)
            try Posix.write(descriptor, patch, at: 5 << 20 | 777)
            try Posix.close(descriptor)
            var expected = big
            expected.replaceSubrange((5 << 20 | 777)..<((5 << 20 | 777) + patch.count), with: patch)
            #expect(try Posix.readFile(a.path("big.bin")) == expected)

            // Growing and shrinking on A show on B.
            #expect(truncate(a.path("small.txt"), 5 << 20) == 0)
            #expect(try Posix.stat(b.path("small.txt")).st_size == 5 << 20)
            #expect(truncate(a.path("big.bin"), 100) == 0)
            #expect(try Posix.readFile(b.path("big.bin")) == Array(big[0..<100]))
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("opening for write takes the exclusive lock: the other host gets EBUSY, named in its log")
        func lockExclusionAcrossMounts() throws {
            let volume = try TestVolume("locks")
            let a = try volume.mount("A")
            let b = try volume.mount("B", options: ["lock_wait_ms=200"])
            try Posix.writeFile(a.path("vm.vmdk"), patternBytes(1 << 20, seed: 3))

            let writer = try Posix.open(a.path("vm.vmdk"), O_RDWR)
            #expect(Posix.openError(b.path("vm.vmdk"), O_RDWR) == EBUSY)
            #expect(Posix.openError(b.path("vm.vmdk"), O_RDONLY) == EBUSY, "readers are excluded by a writer too")
            #expect(unlink(b.path("vm.vmdk")) != 0 && errno == EBUSY, "a file open on another host cannot be removed")
            #expect(chmod(b.path("vm.vmdk"), 0o600) != 0 && errno == EBUSY, "attribute changes need the lock")
            let warning = b.log.split(separator: "\n").first { $0.contains("EBUSY") || $0.contains("locked exclusive") }
            #expect(warning?.contains("(A, slot") == true, "B's log must name the owner host: \(b.log)")
            // The lock is visible to the admin tools, held by A.
            let held = try volume.locks().first { $0.object == "file 'vm.vmdk'" }
            #expect(held?.mode == "exclusive")
            #expect(held?.holders.map(\.hostName) == ["A"])
            try Posix.close(writer)

            // After A's close (RELEASE is asynchronous; the open waits up to lock_wait_ms).
            let reopened = try Posix.open(b.path("vm.vmdk"), O_RDWR)
            #expect(Posix.openError(a.path("vm.vmdk"), O_RDONLY) == EBUSY)
            try Posix.close(reopened)

            // Readers share: both hosts open read-only at once; a writer is refused meanwhile.
            let readerA = try Posix.open(a.path("vm.vmdk"), O_RDONLY)
            let readerB = try Posix.open(b.path("vm.vmdk"), O_RDONLY)
            #expect(Posix.openError(b.path("vm.vmdk"), O_WRONLY) == EBUSY, "A still reads: B cannot upgrade")
            let shared = try volume.locks().first { $0.object == "file 'vm.vmdk'" }
            #expect(shared?.mode == "read-only")
            #expect(shared?.holders.map(\.hostName).sorted() == ["A", "B"])
            try Posix.close(readerA)
            try Posix.close(readerB)
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
        }

        @Test("creates, renames and unlinks on one host show in the other's listing at once")
        func namespaceVisibility() throws {
            let volume = try TestVolume("names")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            #expect(try Posix.list(b.mountpoint) == [])
            try Posix.writeFile(a.path("one"), Array("1".utf8))
            #expect(try Posix.list(b.mountpoint) == ["one"])
            #expect(try Posix.readFile(b.path("one")) == Array("1".utf8))

            #expect(rename(b.path("one"), b.path("two")) == 0)
            #expect(try Posix.list(a.mountpoint) == ["two"])
            #expect(Posix.openError(a.path("one"), O_RDONLY) == ENOENT, "the old name is gone on A at once")
            #expect(try Posix.readFile(a.path("two")) == Array("1".utf8))

            // The same name recreated on the other host is a different file (new generation).
            #expect(unlink(a.path("two")) == 0)
            #expect(try Posix.list(b.mountpoint) == [])
            #expect(Posix.openError(b.path("two"), O_RDONLY) == ENOENT)
            try Posix.writeFile(b.path("two"), Array("second".utf8))
            #expect(try Posix.readFile(a.path("two")) == Array("second".utf8))

            // RENAME_NOREPLACE and RENAME_EXCHANGE across hosts.
            try Posix.writeFile(a.path("three"), Array("3".utf8))
            #expect(renameat2(b.path("two"), b.path("three"), flags: RENAME_NOREPLACE) == -1 && errno == EEXIST)
            #expect(renameat2(b.path("two"), b.path("three"), flags: RENAME_EXCHANGE) == 0)
            #expect(try Posix.readFile(a.path("two")) == Array("3".utf8))
            #expect(try Posix.readFile(a.path("three")) == Array("second".utf8))
            #expect(renameat2(a.path("two"), a.path("four"), flags: RENAME_WHITEOUT) == -1 && errno == EINVAL)

            // Many files: each host sees the other's whole set, stat agrees.
            for index in 0..<40 { try Posix.writeFile(a.path("file-\(index)"), patternBytes(index * 100, seed: UInt64(index))) }
            let listed = try Posix.list(b.mountpoint)
            #expect(listed.count == 42)
            for index in [0, 17, 39] {
                #expect(try Posix.stat(b.path("file-\(index)")).st_size == off_t(index * 100))
            }
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
        }

        @Test("an appender on A and a reader on B, racing through the file's lock, always agree on size and data")
        func appenderAndReaderAgree() throws {
            let volume = try TestVolume("race")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            let path = "log"
            try Posix.writeFile(a.path(path), [])
            let chunk = AppendRace.chunk
            let appends = 150
            let problems = ProblemLog()
            let writerPath = a.path(path)
            let readCount = ReadCounter()
            let writer = Thread {
                AppendRace.append(to: writerPath, count: appends, problems: problems, readsDone: { readCount.value })
            }
            writer.start()
            var reads = 0
            var lastSize = 0
            while !problems.isFinished || reads == 0 {
                let descriptor = try AppendRace.openRetrying(b.path(path), O_RDONLY)
                var info = Glibc.stat()
                fstat(descriptor, &info)
                let content = try Posix.read(descriptor, count: Int(info.st_size) + chunk, at: 0)
                close(descriptor)
                reads += 1
                readCount.increment()
                if content.count != Int(info.st_size) { problems.add("read \(content.count) bytes, fstat said \(info.st_size)") }
                if content.count % chunk != 0 { problems.add("size \(content.count) is not whole appends") }
                if content.count < lastSize { problems.add("size went back from \(lastSize) to \(content.count)") }
                lastSize = content.count
                for index in 0..<(content.count / chunk) where Array(content[(index * chunk)..<((index + 1) * chunk)]) != AppendRace.block(index) {
                    problems.add("append \(index) reads back wrong after \(reads) reads")
                    break
                }
                if problems.count > 5 { break }
            }
            #expect(problems.all.isEmpty, "\(problems.all)")
            #expect(try Posix.stat(b.path(path)).st_size == off_t(appends * chunk))
            #expect(reads > 1)
            #expect(try a.unmount() == 0)
            #expect(try b.unmount() == 0)
        }

        @Test("a read-only mount reads what another host wrote and refuses every change with EROFS")
        func readOnlyMount() throws {
            let volume = try TestVolume("read-only")
            let a = try volume.mount("A")
            let data = patternBytes(3 << 20, seed: 31)
            try Posix.writeFile(a.path("image"), data)
            let b = try volume.mount("B", options: ["ro"])
            #expect(b.mountEntry?.contains(" ro,") == true, "\(b.mountEntry ?? "")")
            #expect(try Posix.readFile(b.path("image")) == data)
            #expect(Posix.openError(b.path("image"), O_WRONLY) == EROFS)
            #expect(Posix.openError(b.path("new"), O_WRONLY | O_CREAT) == EROFS)
            #expect(unlink(b.path("image")) == -1 && errno == EROFS)
            #expect(rename(b.path("image"), b.path("other")) == -1 && errno == EROFS)
            // B's readers share the lock: A can read meanwhile, but not write.
            let reader = try Posix.open(b.path("image"), O_RDONLY)
            #expect(try Posix.readFile(a.path("image")) == data)
            #expect(Posix.openError(a.path("image"), O_WRONLY) == EBUSY)
            try Posix.close(reader)
            #expect(try b.unmount() == 0)
            #expect(try a.unmount() == 0)
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }

        @Test("a clean unmount releases every lock and the heartbeat slot")
        func cleanUnmountReleasesEverything() throws {
            let volume = try TestVolume("unmount")
            let a = try volume.mount("A")
            let b = try volume.mount("B")
            #expect(try volume.liveHosts() == ["A", "B"])
            try Posix.writeFile(a.path("data"), patternBytes(8 << 20, seed: 9))
            let reader = try Posix.open(b.path("data"), O_RDONLY)
            #expect(try volume.locks().contains { $0.object == "file 'data'" && $0.holders.map(\.hostName) == ["B"] })
            try Posix.close(reader)
            #expect(try a.unmount() == 0)
            #expect(try volume.liveHosts() == ["B"])
            #expect(try b.unmount() == 0)
            #expect(try volume.liveHosts() == [])
            #expect(try volume.locks() == [])
            #expect(a.log.contains("file locks and heartbeat slot released"))
            let fsck = try volume.check()
            #expect(fsck.status == 0, "\(fsck)")
        }
    }
}

/// Helpers of the append race test.
/// Reads done by the reader of the append race, for the writer to wait on.
private final class ReadCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}

private enum AppendRace {
    static let chunk = 4096

    /// The bytes of append number `index`.
    static func block(_ index: Int) -> [UInt8] { patternBytes(chunk, seed: UInt64(index) &+ 1000) }

    /// Appends `count` blocks to `path`, one open-append-close each; records problems. Every
    /// 50 appends it waits (up to 10 s) for the reader to finish one more read, so that the
    /// race really interleaves however the two threads are scheduled.
    static func append(to path: String, count: Int, problems: ProblemLog, readsDone: @escaping @Sendable () -> Int) {
        do {
            for index in 0..<count {
                if index % 50 == 0 {
                    let seen = readsDone()
                    let deadline = Date().addingTimeInterval(10)
                    while readsDone() == seen && Date() < deadline { Thread.sleep(forTimeInterval: 0.001) }
                }
                let descriptor = try openRetrying(path, O_WRONLY | O_APPEND)
                let bytes = block(index)
                let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, chunk) }
                if written != chunk { problems.add("append \(index) wrote \(written)") }
                close(descriptor)
            }
        } catch {
            problems.add("writer: \(error)")
        }
        problems.finish()
    }

    /// Opens, waiting out the other host's lock (the daemons wait 1 s; EBUSY after that).
    static func openRetrying(_ path: String, _ flags: Int32) throws -> Int32 {
        // (A do/catch with `continue` here crashes the Swift 6.3 compiler; Result does not.)
        for _ in 0..<30 {
            switch Result(catching: { () throws(SystemCallError) -> Int32 in try Posix.open(path, flags) }) {
            case .success(let descriptor): return descriptor
            case .failure(let error) where error.code == EBUSY: continue
            case .failure(let error): throw error
            }
        }
        throw SystemCallError(code: EBUSY, call: "open \(path) (30 tries)")
    }
}
