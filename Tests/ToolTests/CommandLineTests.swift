import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport

@Suite("Command-line tools on image files")
struct CommandLineTests {
    @Test func formatCopyListCheck() throws {
        let scratch = Scratch("cli")
        let image = scratch.file("lun.img")
        let made = try runTool("mkfs.vmfs", ["--size", "2G", "--label", "datastore1", "--json", image])
        #expect(made.status == 0, "\(made.output)")
        #expect(made.stdout.contains("\"label\" : \"datastore1\""))
        var info = stat()
        stat(image, &info)
        #expect(info.st_blocks * 512 < 64 << 20, "the image must stay sparse")
        let local = scratch.file("local.bin")
        var data = [UInt8](repeating: 0, count: 3 << 20)
        for i in stride(from: 0, to: data.count, by: 4096) { data[i] = UInt8(i / 4096 % 251) }
        try Data(data).write(to: URL(fileURLWithPath: local))
        #expect(try runTool("vmfs", ["put", image, local, "disk.bin"]).status == 0)
        let listed = try runTool("vmfs", ["ls", "--json", image])
        #expect(listed.stdout.contains("\"name\" : \"disk.bin\""))
        #expect(listed.stdout.contains("\"size\" : \(3 << 20)"))
        let back = scratch.file("back.bin")
        #expect(try runTool("vmfs", ["get", image, "disk.bin", back]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == Data(data))
        let fsck = try runTool("fsck.vmfs", ["-n", image])
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(try runTool("vmfs", ["rm", image, "disk.bin"]).status == 0)
        #expect(try runTool("vmfs", ["ls", image]).stdout.isEmpty)
        #expect(try runTool("fsck.vmfs", ["-n", image]).status == 0)
    }

    @Test func mkfsRefusesExistingFilesystems() throws {
        let scratch = Scratch("signatures")
        let image = scratch.file("ext4.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "256M", image]).status == 0)
        let again = try runTool("mkfs.vmfs", [image])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already contains a VMFS volume"), "\(again.output)")
        #expect(try runTool("mkfs.vmfs", ["--force", image]).status == 0)
        for (tool, arguments, expected) in [("/sbin/mkfs.ext4", ["-q", "-F"], "ext4"), ("/sbin/mkfs.xfs", ["-q", "-f"], "XFS"),
                                             ("/sbin/mkfs.btrfs", ["-q", "-f"], "btrfs"), ("/sbin/mkswap", ["-f"], "swap")] {
            guard FileManager.default.isExecutableFile(atPath: tool) else { continue }
            let target = scratch.file("\(expected).img")
            FileManager.default.createFile(atPath: target, contents: nil)
            truncate(target, 512 << 20)
            let made = try runSystem(tool, arguments + [target])
            #expect(made.status == 0, "\(tool): \(made.output)")
            let before = try fingerprint(target)
            let refused = try runTool("mkfs.vmfs", [target])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains(expected), "\(expected): \(refused.output)")
            #expect(try fingerprint(target) == before, "mkfs.vmfs must not write when it refuses")
        }
    }

    @Test func sixtyFourTebibyteImageFormatsFastAndReachesItsEdge() throws {
        // ext4 caps files at 16 TiB: the 64 TiB sparse image lives on tmpfs.
        let scratch = Scratch("64t", base: "/dev/shm")
        let image = scratch.file("big.img")
        let started = Date()
        let made = try runTool("mkfs.vmfs", ["--size", "64T", image] + fastMkfsFlags)
        let seconds = Date().timeIntervalSince(started)
        #expect(made.status == 0, "\(made.output)")
        #expect(seconds < 5, "formatting a 64 TiB sparse image took \(seconds) s")
        var options = MountOptions(host: HostIdentity.local(override: "edge"))
        options.timing = HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 800, ioTimeoutMs: 300)
        let volume = try Volume.mount(path: image, options: options)
        let handle = try volume.create("huge.vmdk", access: .readWrite)
        let edge: UInt64 = (64 << 40) - (1 << 20)
        var block = [UInt8](repeating: 0, count: 1 << 20)
        for i in 0..<block.count { block[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
        try handle.write(bytes: block, at: edge)
        try handle.write(bytes: [0xAA], at: 0)
        #expect(handle.size == 64 << 40)
        #expect(try handle.read(count: block.count, at: edge) == block)
        #expect(try handle.read(count: 4096, at: 32 << 40) == [UInt8](repeating: 0, count: 4096))
        try handle.close()
        try volume.unmount()
        let fsck = try runTool("fsck.vmfs", ["-n", image])
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(fsck.stdout.contains("2 data blocks"), "\(fsck.output)")
        let reopened = try Volume.mount(path: image, options: options)
        #expect(try reopened.open("huge.vmdk").read(count: block.count, at: edge) == block)
        try reopened.unmount()
    }
}

@Suite("Bad input to the tools")
struct BadInputTests {
    /// Each damaged image: every read-only tool and a mount fail clearly, and nothing is written.
    @Test(arguments: ["random bytes", "truncated", "wrong magic", "future version", "corrupt header checksum", "tiny file"])
    func damagedImagesGiveClearErrorsAndStayUntouched(kind: String) throws {
        let scratch = Scratch("bad")
        let image = scratch.file("lun.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "512M", image]).status == 0)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: image))
        var expectedFragment = "volume header"
        switch kind {
        case "random bytes":
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }))
            expectedFragment = "no VMFS volume"
        case "truncated":
            try handle.truncate(atOffset: 300 << 20)
            expectedFragment = "truncated"
        case "wrong magic":
            try handle.seek(toOffset: 2)
            try handle.write(contentsOf: Data([0x58]))
            expectedFragment = "magic"
        case "future version":
            var header = try Data(contentsOf: URL(fileURLWithPath: image)).prefix(4096)
            header[8] = 7
            header[10] = 0  // minor version 0
            let crc = CRC32C.checksum([UInt8](header), excludingFieldAt: 12)
            header.replaceSubrange(12..<16, with: withUnsafeBytes(of: crc.littleEndian) { Data($0) })
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: header)
            expectedFragment = "format version 7.0"
        case "corrupt header checksum":
            try handle.seek(toOffset: 40)
            try handle.write(contentsOf: Data([0xEE]))
            expectedFragment = "checksum"
        default:
            try handle.truncate(atOffset: 100)
            expectedFragment = "too small"
        }
        try handle.close()
        let before = try fingerprint(image)
        for arguments in [["vmfs", "info", image], ["vmfs", "ls", image], ["vmfs", "put", image, "/etc/hostname", "x"],
                          ["fsck.vmfs", "-n", image], ["vmfs", "hosts", image]] {
            let result = try runTool(arguments[0], Array(arguments.dropFirst()))
            #expect(result.status != 0, "\(kind): \(arguments) must fail")
            #expect(result.output.contains(expectedFragment), "\(kind): \(arguments): \(result.output)")
            #expect(!result.output.contains("Fatal error") && !result.output.contains("Backtrac"), "\(kind): \(arguments) crashed")
            if arguments[0] != "fsck.vmfs" || kind != "truncated" {
                #expect(result.output.contains("offset") || result.output.contains("byte") || kind == "tiny file" || kind == "truncated",
                        "\(kind): the error must name the offset: \(result.output)")
            }
        }
        #expect(try fingerprint(image) == before, "\(kind): a failing tool wrote to the image")
    }

    @Test func fsckExitCodesOnAnImageFile() throws {
        let scratch = Scratch("fsck-cli")
        let image = scratch.file("lun.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "1G", image]).status == 0)
        let local = scratch.file("data.bin")
        try Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 / 4096) }).write(to: URL(fileURLWithPath: local))
        #expect(try runTool("vmfs", ["put", image, local, "data.bin"]).status == 0)
        let header = try Volume.readHeader(try FileBlockDevice(path: image, readOnly: true))
        for target in [header.layout.descriptorOffset + 2, header.layout.nameTableOffset + 100, header.layout.blockBitmapOffset + 70, UInt64(30)] {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: image))
            try handle.seek(toOffset: target)
            let old = try handle.read(upToCount: 1)![0]
            try handle.seek(toOffset: target)
            try handle.write(contentsOf: Data([old ^ 0x24]))
            try handle.close()
            let before = try fingerprint(image)
            let check = try runTool("fsck.vmfs", ["-n", image])
            #expect(check.status == 4, "\(target): \(check.output)")
            #expect(try fingerprint(image) == before, "fsck -n wrote")
            let repair = try runTool("fsck.vmfs", ["-y", image])
            #expect(repair.status == 1, "\(target): \(repair.output)")
            let again = try runTool("fsck.vmfs", ["-n", image])
            #expect(again.status == 0, "\(target): \(again.output)")
        }
        let back = scratch.file("back.bin")
        #expect(try runTool("vmfs", ["get", image, "data.bin", back]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == Data(contentsOf: URL(fileURLWithPath: local)))
        #expect(try runTool("fsck.vmfs", ["-n", "-y", image]).status != 0, "-n and -y together are refused")
        #expect(try runTool("fsck.vmfs", ["-n", "/nonexistent/lun.img"]).status == 8)
    }
}
