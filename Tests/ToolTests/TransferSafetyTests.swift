import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport

/// `vmfs put`, `vmfs get`, `vmfs create` and `mkfs.vmfs` given sources, destinations and sizes
/// that used to hang them, crash them, or leave empty or half-written files behind.
@Suite("Copying in and out safely")
struct TransferSafetyTests {
    private static let timing = HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 800, ioTimeoutMs: 300)

    private static func volume(_ scratch: Scratch, size: String = "4G") throws -> String {
        let image = scratch.file("lun.img")
        let made = try runTool("mkfs.vmfs", ["--size", size] + fastMkfsFlags + [image])
        try #require(made.status == 0, "\(made.output)")
        return image
    }

    private static func mount(_ image: String, _ host: String) throws -> Volume {
        var options = MountOptions(host: HostIdentity.local(override: host))
        options.timing = timing
        return try Volume.mount(path: image, options: options)
    }

    private static func names(_ image: String) throws -> [String] {
        try runTool("vmfs", ["ls", image]).stdout.split(separator: "\n").map(String.init).sorted()
    }

    private static func expectNoCrash(_ result: ToolResult, _ what: String) {
        #expect(!result.timedOut, "\(what) hung")
        #expect(!result.output.contains("Fatal error") && !result.output.contains("Backtrac"), "\(what) crashed: \(result.output)")
    }

    @Test func putImportsBlockDevicesAndPseudoFilesAndRefusesSourcesWithoutAnEnd() throws {
        let scratch = Scratch("put-sources")
        let image = try Self.volume(scratch)
        // A block device: its contents, not its st_size of 0.
        if isRoot {
            let backing = scratch.file("device.img")
            var bytes = [UInt8](repeating: 0, count: 8 << 20)
            for i in stride(from: 0, to: bytes.count, by: 512) where (i >> 20) % 3 != 1 { bytes[i] = UInt8(truncatingIfNeeded: i >> 9 | 1) }
            try Data(bytes).write(to: URL(fileURLWithPath: backing))
            let loop = try attachLoop(backing)
            defer { detachLoop(loop) }
            let put = try runTool("vmfs", ["put", image, loop, "device.raw"], timeout: 60)
            Self.expectNoCrash(put, "put of a block device")
            #expect(put.status == 0, "\(put.output)")
            let back = scratch.file("device.back")
            #expect(try runTool("vmfs", ["get", image, "device.raw", back]).status == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == Data(bytes), "the block device's contents must be copied")
        }
        // A /proc file says 0 bytes: it is read to its end.
        let put = try runTool("vmfs", ["put", image, "/proc/version", "version.txt"], timeout: 60)
        #expect(put.status == 0, "\(put.output)")
        let back = scratch.file("version.back")
        #expect(try runTool("vmfs", ["get", image, "version.txt", back]).status == 0)
        let version = try Data(contentsOf: URL(fileURLWithPath: "/proc/version"))
        #expect(!version.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == version)
        // No end to wait for (a character device, a FIFO without a writer), or no data at all (a directory):
        // refused at once, and nothing is left on the volume.
        let fifo = scratch.file("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        for (source, fragment) in [("/dev/zero", "character device"), (fifo, "FIFO"), (scratch.path, "directory")] {
            let refused = try runTool("vmfs", ["put", image, source, "refused"], timeout: 30)
            Self.expectNoCrash(refused, "put of \(source)")
            #expect(refused.status != 0, "put of \(source) must fail")
            #expect(refused.stderr.contains(source) && refused.stderr.contains(fragment), "\(refused.stderr)")
        }
        #expect(try Self.names(image) == (isRoot ? ["device.raw", "version.txt"] : ["version.txt"]))
        #expect(try runTool("fsck.vmfs", ["-n", image]).status == 0)
    }

    @Test func putReplacesAFileOnlyOnceTheCopyIsComplete() throws {
        let scratch = Scratch("put-force")
        let image = try Self.volume(scratch)
        let original = scratch.file("original.bin")
        let originalBytes = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) })
        try originalBytes.write(to: URL(fileURLWithPath: original))
        #expect(try runTool("vmfs", ["put", image, original, "disk.bin"]).status == 0)
        // Without --force an existing file is refused; with --force, a copy whose source fails
        // while it is read (reading address 0 of its own memory is EIO) leaves the old file.
        let refused = try runTool("vmfs", ["put", image, "/proc/version", "disk.bin"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("exists"), "\(refused.stderr)")
        let failed = try runTool("vmfs", ["put", "--force", image, "/proc/self/mem", "disk.bin"], timeout: 60)
        Self.expectNoCrash(failed, "put of /proc/self/mem")
        #expect(failed.status != 0, "\(failed.output)")
        #expect(failed.stderr.contains("/proc/self/mem"), "\(failed.stderr)")
        let back = scratch.file("back.bin")
        #expect(try runTool("vmfs", ["get", image, "disk.bin", back]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == originalBytes, "a failed --force copy must keep the old file")
        // A complete copy replaces it.
        let replacement = scratch.file("replacement.bin")
        try Data(repeating: 0x5C, count: 5000).write(to: URL(fileURLWithPath: replacement))
        #expect(try runTool("vmfs", ["put", "--force", image, replacement, "disk.bin"]).status == 0)
        #expect(try runTool("vmfs", ["get", image, "disk.bin", back]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == Data(repeating: 0x5C, count: 5000))
        #expect(try Self.names(image) == ["disk.bin"], "no temporary file may stay behind")
        #expect(try runTool("fsck.vmfs", ["-n", image]).status == 0)
    }

    @Test func impossibleSizesFailClearlyAndCreateNothing() throws {
        let scratch = Scratch("sizes")
        let huge = scratch.file("huge.img")
        let mkfs = try runTool("mkfs.vmfs", ["--size", "8192P", huge], timeout: 60)
        Self.expectNoCrash(mkfs, "mkfs.vmfs --size 8192P")
        #expect(mkfs.status != 0)
        #expect(mkfs.stderr.contains("\(Int64.max)"), "the error must name the maximum: \(mkfs.stderr)")
        #expect(!FileManager.default.fileExists(atPath: huge), "a failed mkfs.vmfs must not leave an image behind")
        let image = try Self.volume(scratch, size: "1G")
        let create = try runTool("vmfs", ["create", "--size", "8192P", image, "too-big"], timeout: 60)
        Self.expectNoCrash(create, "vmfs create --size 8192P")
        #expect(create.status != 0)
        #expect(create.stderr.contains("maximum file size"), "\(create.stderr)")
        #expect(try Self.names(image).isEmpty, "a failed create must not leave an empty file")
        #expect(try runTool("vmfs", ["create", "--size", "3G", image, "thin"]).status == 0)
        #expect(try Self.names(image) == ["thin"])
    }

    @Test func getReadsOnlyDataAndReplacesTheDestinationOnlyWhenComplete() throws {
        let scratch = Scratch("get")
        let image = try Self.volume(scratch)
        let head = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let tail = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 3 &+ 11) }
        let huge: UInt64 = 8 << 40  // 8 TiB, almost all hole: reading the holes would take days
        do {
            let volume = try Self.mount(image, "writer")
            let sparse = try volume.create("sparse.vmdk", access: .readWrite)
            try sparse.write(bytes: head, at: 0)
            try sparse.write(bytes: tail, at: 2 << 30)
            try sparse.truncate(to: huge)
            try sparse.close()
            let damaged = try volume.create("damaged.vmdk", access: .readWrite)
            try damaged.write(bytes: head, at: 0)
            try damaged.write(bytes: tail, at: 1 << 30)  // past the direct pointers: needs a pointer block
            try damaged.close()
            try volume.unmount()
        }
        // The data comes out at its offsets and the holes stay holes.
        let copy = scratch.file("sparse.copy")
        let got = try runTool("vmfs", ["get", image, "sparse.vmdk", copy], timeout: 120)
        Self.expectNoCrash(got, "get of an 8 TiB thin file")
        #expect(got.status == 0, "\(got.output)")
        var info = stat()
        #expect(stat(copy, &info) == 0 && UInt64(info.st_size) == huge)
        #expect(info.st_blocks * 512 <= 8 << 20, "the copy must stay sparse: \(info.st_blocks * 512) bytes allocated")
        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: copy))
        #expect(try reader.read(upToCount: head.count) == Data(head))
        try reader.seek(toOffset: 2 << 30)
        #expect(try reader.read(upToCount: tail.count) == Data(tail))
        try reader.seek(toOffset: 5 << 40)
        #expect(try reader.read(upToCount: 4096) == Data(count: 4096))
        try reader.close()
        // A symlink at the destination is replaced, never followed.
        let victim = scratch.file("victim")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let link = scratch.file("link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        let small = scratch.file("small")
        try Data(repeating: 0x42, count: 100).write(to: URL(fileURLWithPath: small))
        #expect(try runTool("vmfs", ["put", image, small, "small.txt"]).status == 0)
        #expect(try runTool("vmfs", ["get", image, "small.txt", link]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("precious".utf8), "the symlink's target was written")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == nil, "the symlink must be replaced")
        #expect(try Data(contentsOf: URL(fileURLWithPath: link)) == Data(repeating: 0x42, count: 100))
        // A copy that fails while reading (both copies of the pointer block damaged) leaves the destination as it was.
        let volume = try Self.mount(image, "corrupter")
        let descriptor = try volume.open("damaged.vmdk").file.descriptor
        let layout = volume.header.layout
        try volume.unmount()
        let device = try FileBlockDevice(path: image)
        for address in [layout.pointerNode(descriptor.indirect[0]), layout.mirror(of: layout.pointerNode(descriptor.indirect[0]))!] {
            var byte = try device.read(count: 1, at: address + 70)
            byte[0] ^= 0x5A
            try device.write(bytes: byte, at: address + 70)
        }
        try device.flush()
        let failed = try runTool("vmfs", ["get", image, "damaged.vmdk", victim], timeout: 60)
        Self.expectNoCrash(failed, "get of a damaged file")
        #expect(failed.status != 0, "\(failed.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("precious".utf8), "a failed get must keep the old file")
        // A FIFO or a directory at the destination is refused, without waiting for a reader.
        let fifo = scratch.file("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        for target in [fifo, scratch.path] {
            let refused = try runTool("vmfs", ["get", image, "small.txt", target], timeout: 30)
            Self.expectNoCrash(refused, "get into \(target)")
            #expect(refused.status != 0)
            #expect(refused.stderr.contains(target), "\(refused.stderr)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.contains("vmfs-get") }
        #expect(leftovers.isEmpty, "temporary files left behind: \(leftovers)")
    }
}
