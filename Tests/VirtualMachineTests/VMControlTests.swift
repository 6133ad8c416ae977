import Foundation
import Testing
@testable import VMFSCore
import VMManagement
import VMFSTestSupport

@Suite("VMs on a VMFS volume through vmctl", .serialized, .enabled(if: hasKVM, "needs read-write /dev/kvm (NO_KVM=1 skips)"))
struct VMControlTests {
    @Test(arguments: [1, 4])
    func testGuestRunsAndPowersOffCleanly(vcpus: Int) throws {
        let image = try VolumeImage()
        let guest = try testGuestImage()
        let created = try runTool("vmctl", ["create", "--volume", image.path, "--name", "vm\(vcpus)", "--vcpus", "\(vcpus)", "--memory", "64M",
                                            "--disk", "1G", "--guest", guest, "--workload", "vcpuReport", "--args", "1048576"])
        #expect(created.status == 0, "\(created.stderr)")
        let run = try runTool("vmctl", ["run", "--volume", image.path, "vm\(vcpus)"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        for vcpu in 0..<vcpus { #expect(run.stdout.contains("vcpu \(vcpu): filled 1024 KiB")) }
        #expect(run.stdout.contains("all \(vcpus) vcpus reported"))
        let log = try image.text(of: "vm\(vcpus).log")
        #expect(log.contains("all \(vcpus) vcpus reported"), "the console must reach the .log on the volume")
        #expect(log.contains("powered off with status 0"))
        let listed = try runTool("vmctl", ["list", "--volume", image.path, "--json"])
        #expect(listed.stdout.contains("\"state\" : \"stopped\""))
        let files = try runTool("vmfs", ["ls", image.path]).stdout.split(separator: "\n")
        #expect(files.sorted() == ["vm\(vcpus)-flat.vmdk", "vm\(vcpus).guest", "vm\(vcpus).log", "vm\(vcpus).vmdk", "vm\(vcpus).vmx"])
    }

    @Test func guestDiskPatternLandsOnTheVolumeAndVerifiesInASecondRun() throws {
        let image = try VolumeImage()
        let guest = try testGuestImage()
        let seed: UInt64 = 0xC0FFEE_1234
        let blocks: UInt64 = 48
        let diskSize: UInt64 = 6 << 30
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "pattern", "--memory", "64M", "--disk", "6G",
                                      "--guest", guest, "--workload", "diskWritePattern", "--args", "\(seed),\(blocks)"]).status == 0)
        let write = try runTool("vmctl", ["run", "--volume", image.path, "pattern"])
        #expect(write.status == 0, "\(write.stdout)\(write.stderr)")
        #expect(write.stdout.contains("pattern written: \(blocks) blocks"))
        // The host reads the disk through VMFSCore and finds exactly the pattern, past 4 GiB too.
        let volume = try image.mount("inspector")
        let disk = try volume.open("pattern-flat.vmdk")
        let offsets = (0..<blocks).map { i in ((diskSize - 8192) / (blocks - 1) * i) & ~4095 }
        #expect(offsets.last! > 4 << 30)
        for offset in offsets {
            let bytes = try disk.read(count: 8192, at: offset)
            let words = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
            #expect(words == (0..<1024).map { mix64(seed ^ (offset + UInt64($0) * 8)) }, "pattern block at \(offset)")
            #expect(try disk.read(count: 4096, at: offset + 8192) == [UInt8](repeating: 0, count: 4096) || offset == offsets.last!)
        }
        let status = try disk.status()
        #expect(status.allocatedBytes <= blocks * 2 * (1 << 20) + (1 << 20), "the thin disk allocated \(status.allocatedBytes) bytes")
        try disk.close()
        // Switch the VM's workload to verification and run it again.
        let vmx = try volume.open("pattern.vmx", access: .readWrite)
        var text = String(decoding: try vmx.read(count: Int(vmx.size), at: 0), as: UTF8.self)
        text = text.replacingOccurrences(of: "diskWritePattern", with: "diskVerifyPattern")
        try vmx.truncate(to: 0)
        try vmx.write(bytes: Array(text.utf8), at: 0)
        try vmx.close()
        try volume.unmount()
        let verify = try runTool("vmctl", ["run", "--volume", image.path, "pattern"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("pattern verified: \(blocks) blocks"))
        #expect(try runTool("fsck.vmfs", ["-n", image.path]).status == 0)
    }

    @Test func aRunningVMCannotBeStartedAgainFromAnotherHost() throws {
        let image = try VolumeImage()
        let guest = try testGuestImage()
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "busy", "--memory", "64M", "--disk", "64M",
                                      "--guest", guest, "--workload", "spin"]).status == 0)
        let first = Process()
        first.executableURL = toolsDirectory.appendingPathComponent("vmctl")
        first.arguments = ["run", "--volume", image.path, "--host-id", "esx-a", "--quiet", "--time-limit", "60", "busy"]
        try first.run()
        var running = false
        for _ in 0..<200 {
            if try runTool("vmctl", ["list", "--volume", image.path, "--json", "--host-id", "lister"]).stdout.contains("\"running\"") {
                running = true
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(running)
        let second = try runTool("vmctl", ["run", "--volume", image.path, "--host-id", "esx-b", "busy"])
        #expect(second.status != 0)
        #expect(second.stderr.contains("already running"), "\(second.stderr)")
        #expect(second.stderr.contains("esx-a"), "the message must name the owner host: \(second.stderr)")
        let again = try runTool("vmctl", ["run", "--volume", image.path, "--host-id", "esx-a-second-process", "busy"])
        #expect(again.status != 0)
        let removal = try runTool("vmctl", ["rm", "--volume", image.path, "--host-id", "esx-b", "busy"])
        #expect(removal.status != 0, "a running VM must not be removable")
        kill(first.processIdentifier, SIGTERM)
        first.waitUntilExit()
        #expect(first.terminationStatus == 0, "SIGTERM must stop the VM cleanly")
        #expect(try runTool("vmctl", ["rm", "--volume", image.path, "busy"]).status == 0)
        #expect(try runTool("vmfs", ["ls", image.path]).stdout.isEmpty)
        #expect(try runTool("fsck.vmfs", ["-n", image.path]).status == 0)
    }

    /// The hostile-driver guest against a disk on VMFS: DISCARD and WRITE_ZEROES reach VMFSCore as
    /// hole punches and zero writes, and the volume stays consistent.
    @Test func hostileGuestLimitsOnAVMFSDisk() throws {
        let image = try VolumeImage(size: "2G")
        let guest = try testGuestImage()
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "limits", "--vcpus", "2", "--memory", "3200M",
                                      "--disk", "256M", "--guest", guest, "--workload", "hostileLimits"]).status == 0)
        let run = try runTool("vmctl", ["run", "--volume", image.path, "--time-limit", "60", "limits"], timeout: 120)
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(!run.stdout.contains("FAILED") && run.stdout.contains("cases passed"), "\(run.stdout)")
        let volume = try image.mount("inspector")
        let disk = try volume.open("limits-flat.vmdk")
        let words = try disk.read(count: 64 << 10, at: 0).withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
        #expect(words == (0..<UInt64(8192)).map { mix64(0xa11ce ^ ($0 * 8)) })
        #expect(try disk.read(count: 16 * 512, at: 1024 * 512) == [UInt8](repeating: 0, count: 16 * 512))
        try disk.close()
        try volume.unmount()
        #expect(try runTool("fsck.vmfs", ["-n", image.path]).status == 0)
    }

    /// Boot images are copied off the volume to be loaded: never where other local users can read
    /// or replace them, and never left behind.
    @Test func bootImagesAreExtractedPrivatelyAndRemoved() throws {
        let image = try VolumeImage(size: "1G")
        let guest = try testGuestImage()
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "private", "--memory", "64M",
                                      "--guest", guest, "--workload", "spin"]).status == 0)
        let temporary = image.directory.appendingPathComponent("tmp").path
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        let vm = Process()
        vm.executableURL = toolsDirectory.appendingPathComponent("vmctl")
        vm.arguments = ["run", "--volume", image.path, "--quiet", "--time-limit", "60", "private"]
        vm.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": temporary]) { $1 }
        try vm.run()
        var exposed: [String] = []
        var running = false
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && !running {
            for entry in (try? FileManager.default.subpathsOfDirectory(atPath: temporary)) ?? [] {
                var info = stat()
                guard lstat("\(temporary)/\(entry)", &info) == 0 else { continue }
                let isDirectory = info.st_mode & S_IFMT == S_IFDIR
                if info.st_mode & (isDirectory ? 0o077 : 0o177) != 0 { exposed.append("\(entry) \(String(info.st_mode & 0o777, radix: 8))") }
            }
            running = try runTool("vmctl", ["list", "--volume", image.path, "--json", "--host-id", "lister"]).stdout.contains("\"running\"")
        }
        #expect(running)
        Thread.sleep(forTimeInterval: 0.5)
        let whileRunning = (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []
        kill(vm.processIdentifier, SIGTERM)
        vm.waitUntilExit()
        #expect(vm.terminationStatus == 0)
        #expect(exposed.isEmpty, "boot images readable by others: \(exposed)")
        #expect(whileRunning.isEmpty, "boot images left in \(temporary) while the VM runs: \(whileRunning)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: temporary).isEmpty)
    }

    @Test func badInputGivesClearErrorsAndLeavesNothingHalfCreated() throws {
        let image = try VolumeImage()
        let guest = try testGuestImage()
        // A boot image that does not exist: nothing may be created.
        let missing = try runTool("vmctl", ["create", "--volume", image.path, "--name", "ghost", "--disk", "1G", "--guest", "/nonexistent.elf"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("/nonexistent.elf"))
        #expect(try runTool("vmfs", ["ls", image.path]).stdout.isEmpty)
        // A truncated guest image: the run fails naming the image.
        let truncated = image.directory.appendingPathComponent("truncated.elf").path
        let bytes = try Data(contentsOf: URL(fileURLWithPath: guest))
        try bytes.prefix(100).write(to: URL(fileURLWithPath: truncated))
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "broken", "--disk", "16M", "--guest", truncated]).status == 0)
        let broken = try runTool("vmctl", ["run", "--volume", image.path, "broken"])
        #expect(broken.status != 0)
        #expect(broken.stderr.contains("broken.guest") || broken.stderr.lowercased().contains("elf"), "\(broken.stderr)")
        // Too many vCPUs and too much memory are refused at creation with a clear message, creating nothing.
        let huge = try runTool("vmctl", ["create", "--volume", image.path, "--name", "huge", "--vcpus", "300", "--memory", "64M",
                                         "--guest", guest])
        #expect(huge.status != 0)
        #expect(huge.stderr.contains("vCPU"), "\(huge.stderr)")
        let tooGreedy = try runTool("vmctl", ["create", "--volume", image.path, "--name", "greedy", "--memory", "4T", "--guest", guest])
        #expect(tooGreedy.status != 0)
        #expect(tooGreedy.stderr.lowercased().contains("memory"), "\(tooGreedy.stderr)")
        #expect(try runTool("vmfs", ["ls", image.path]).stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("broken") })
        // More memory than the host has is refused by the hypervisor when the VM runs.
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "greedy", "--memory", "62G", "--guest", guest]).status == 0)
        let greedy = try runTool("vmctl", ["run", "--volume", image.path, "greedy"])
        #expect(greedy.status != 0)
        #expect(greedy.stderr.lowercased().contains("memory"), "\(greedy.stderr)")
        // A malformed .vmx names the file and the line.
        let volume = try image.mount("editor")
        let vmx = try volume.open("greedy.vmx", access: .readWrite)
        try vmx.write(bytes: Array("numvcpus = 2 without quotes\n".utf8), at: vmx.size)
        try vmx.close()
        try volume.unmount()
        let malformed = try runTool("vmctl", ["run", "--volume", image.path, "greedy"])
        #expect(malformed.status != 0)
        #expect(malformed.stderr.contains("greedy.vmx line"), "\(malformed.stderr)")
        // A missing disk extent is named.
        let editor = try image.mount("editor-2")
        try editor.remove("broken-flat.vmdk")
        try editor.unmount()
        let diskless = try runTool("vmctl", ["run", "--volume", image.path, "broken"])
        #expect(diskless.status != 0)
        #expect(diskless.stderr.contains("broken-flat.vmdk"), "\(diskless.stderr)")
        #expect(try runTool("fsck.vmfs", ["-n", image.path]).status == 0)
    }
}

@Suite("A Linux VM stored on a VMFS volume", .enabled(if: hasKVM, "needs read-write /dev/kvm (NO_KVM=1 skips)"))
struct LinuxVMOnVolumeTests {
    /// The stock Debian kernel and initramfs are copied onto the volume by `vmctl create` and
    /// booted by `vmctl run` from there. On these machines (software KVM) the kernel gets as far
    /// as its console banner, e820 map and MP table, then stops in `alternative_instructions()`.
    @Test func debianKernelFromTheVolumePrintsItsBannerIntoTheLog() throws {
        let assets = repositoryRoot.appendingPathComponent(".cache/guest")
        let vmlinux = assets.appendingPathComponent("vmlinux").path
        let initramfs = assets.appendingPathComponent("initramfs.cpio.gz").path
        if !FileManager.default.fileExists(atPath: vmlinux) {
            let build = Process()
            build.executableURL = repositoryRoot.appendingPathComponent("Tools/scripts/build-guest.sh")
            try build.run()
            build.waitUntilExit()
        }
        try #require(FileManager.default.fileExists(atPath: vmlinux), "Tools/scripts/build-guest.sh did not produce the kernel")
        let image = try VolumeImage(size: "2G")
        let created = try runTool("vmctl", ["create", "--volume", image.path, "--name", "debian", "--vcpus", "1", "--memory", "128M",
                                            "--disk", "1G", "--kernel", vmlinux, "--initrd", initramfs, "--cmdline",
                                            "console=ttyS0 earlyprintk=serial noxsave nokaslr pci=conf1 acpi=off reboot=k panic=1 8250.nr_uarts=1"])
        #expect(created.status == 0, "\(created.stderr)")
        let run = try runTool("vmctl", ["run", "--volume", image.path, "--quiet", "--time-limit", "90", "debian"])
        #expect([0, 3, 4, 5].contains(run.status), "\(run.stderr)")
        let log = try image.text(of: "debian.log")
        #expect(log.contains("Linux version 6.1"), "the kernel banner must reach debian.log on the volume")
        #expect(log.contains("BIOS-e820"), "the e820 map must be printed")
        #expect(log.contains("MPTABLE") || log.contains("MP-table"), "the MP table must be found")
        #expect(try runTool("fsck.vmfs", ["-n", image.path]).status == 0)
    }
}
