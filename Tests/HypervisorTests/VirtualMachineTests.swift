import Foundation
import Testing
@testable import Hypervisor

/// Runs a VM to completion on the calling thread and returns its console and power-off reason.
func runTestGuest(_ workload: TestGuestWorkload, arguments: [UInt64] = [], vcpus: Int = 1,
                  memory: UInt64 = 64 << 20, disks: [any DiskBackend] = [],
                  timeLimit: Double = 60) throws -> (reason: PowerOffReason, console: CapturingConsole, machine: VirtualMachine) {
    let console = CapturingConsole()
    let configuration = VirtualMachineConfiguration(
        vcpuCount: vcpus, memorySize: memory, disks: disks,
        bootSource: .testGuest(TestGuestConfiguration(imagePath: try GuestArtifacts.testGuest(), workload: workload,
                                                      arguments: arguments)),
        console: console)
    let machine = try VirtualMachine(configuration: configuration)
    let reason = try machine.run(timeLimit: timeLimit)
    return (reason, console, machine)
}

@Suite("Virtual machines on /dev/kvm", .serialized,
       .enabled(if: Host.hasKVM, "requires read/write /dev/kvm (set NO_KVM=1 to skip)"))
struct VirtualMachineTests {
    @Test func helloOnOneVCPUPowersOffCleanlyWithoutLeaks() throws {
        _ = try GuestArtifacts.testGuest()
        let descriptorsBefore = Host.kvmFileDescriptorCount
        do {
            let (reason, console, machine) = try runTestGuest(.hello)
            #expect(reason == .guestPoweredOff(status: 0))
            #expect(console.lines.contains("hello from the test guest: 1 vcpus, 64 MiB"))
            let markers = machine.guestMarkers
            #expect(markers.first?.code == TestGuestABI.entryMarker && markers.first?.vcpu == 0)
            #expect(throws: HypervisorError.self) { try machine.run() }  // a VM runs once
        }
        #expect(Host.kvmFileDescriptorCount == descriptorsBefore)
        #expect(descriptorsBefore == 0)
    }

    @Test(arguments: [1, 4])
    func everyVCPUWorksAndReports(vcpus: Int) throws {
        let slice: UInt64 = 1 << 20
        let (reason, console, machine) = try runTestGuest(.vcpuReport, arguments: [slice], vcpus: vcpus)
        #expect(reason == .guestPoweredOff(status: 0))
        #expect(console.lines.contains("all \(vcpus) vcpus reported"))
        // Every vCPU entered the guest (marker 1 from each) and reported its own checksum.
        #expect(Set(machine.guestMarkers.filter { $0.code == 1 }.map(\.vcpu)) == Set(0..<vcpus))
        for vcpu in 0..<vcpus {
            let prefix = "vcpu \(vcpu): filled 1024 KiB at 0x"
            let line = try #require(console.lines.first { $0.hasPrefix(prefix) }, "no report from vCPU \(vcpu)")
            let fields = line.dropFirst(prefix.count).split(separator: " ")
            let base = try #require(UInt64(fields[0], radix: 16))
            let reported = try #require(UInt64(fields[2], radix: 16))
            // Recompute the guest's work on the host, from the guest's own memory.
            var checksum: UInt64 = 0
            for index in 0..<(slice / 8) {
                let address = base + index * 8
                let expected = mix64(0x5eed ^ (UInt64(vcpu) << 56) ^ address)
                let word = try machine.memory.load(UInt64.self, at: address)
                if word != expected {
                    Issue.record("vCPU \(vcpu) memory at 0x\(String(address, radix: 16)) is wrong")
                    break
                }
                checksum ^= mix64(word &+ index)
            }
            #expect(checksum == reported, "vCPU \(vcpu) checksum")
        }
    }

    @Test func dirtyLogReportsThePagesTheGuestWrote() throws {
        let slice: UInt64 = 2 << 20
        let machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
            vcpuCount: 2, memorySize: 64 << 20,
            bootSource: .testGuest(TestGuestConfiguration(imagePath: try GuestArtifacts.testGuest(), workload: .memoryFill,
                                                          arguments: [slice, 77])),
            console: CapturingConsole(), logDirtyPages: true))
        #expect(try machine.run(timeLimit: 60) == .guestPoweredOff(status: 0))
        let console = try #require(machine.configuration.console as? CapturingConsole)
        let dirty = Set(try machine.collectDirtyPages())
        for vcpu in 0..<2 {
            let prefix = "vcpu \(vcpu): filled and verified 2048 KiB at 0x"
            let line = try #require(console.lines.first { $0.hasPrefix(prefix) })
            let base = try #require(UInt64(line.dropFirst(prefix.count), radix: 16))
            let pages = stride(from: base, to: base + slice, by: 4096)
            #expect(pages.allSatisfy { dirty.contains($0) }, "vCPU \(vcpu)'s slice is not all dirty")
            #expect(try machine.memory.load(UInt64.self, at: base) == mix64(77 ^ (UInt64(vcpu) << 56) ^ base))
        }
        // Slices, stacks, page-table accesses and the parameter page, but not all of RAM.
        #expect(dirty.count >= 1024 && dirty.count < 4096, "\(dirty.count) dirty pages")
        #expect(try machine.collectDirtyPages().isEmpty)  // reading the log cleared it
    }

    @Test func memoryAboveFourGigabytesIsReachable() throws {
        // 4 GiB + 64 MiB of RAM: 3 GiB below the MMIO hole, 1 GiB + 64 MiB from 4 GiB (lazily backed).
        let base: UInt64 = (4 << 30) + (512 << 20)
        let slice: UInt64 = 1 << 20
        let (reason, console, machine) = try runTestGuest(.memoryFill, arguments: [slice, 99, base], vcpus: 2,
                                                          memory: (4 << 30) + (64 << 20))
        #expect(reason == .guestPoweredOff(status: 0), "\(console.text)")
        #expect(machine.memory.regions.count == 2)
        for vcpu in 0..<2 {
            let start = base + UInt64(vcpu) * slice
            #expect(console.lines.contains("vcpu \(vcpu): filled and verified 1024 KiB at 0x\(String(start, radix: 16))"))
            for address in [start, start + slice - 8] {
                #expect(try machine.memory.load(UInt64.self, at: address) == mix64(99 ^ (UInt64(vcpu) << 56) ^ address))
            }
        }
        // The guest refuses addresses that are not RAM (inside the MMIO hole).
        let refused = try runTestGuest(.memoryFill, arguments: [slice, 99, 0xD000_0000], memory: (4 << 30) + (64 << 20))
        #expect(refused.reason == .guestPoweredOff(status: TestGuestResult.verifyMismatch.rawValue))
        #expect(refused.console.text.contains("does not fit"))
    }

    @Test func stopAndTimeLimitEndSpinningVCPUs() throws {
        let start = Date()
        let (reason, console, _) = try runTestGuest(.spin, vcpus: 2, timeLimit: 1.0)
        #expect(reason == .timedOut)
        #expect(console.text.contains("spinning on 2 vcpus"))
        #expect(Date().timeIntervalSince(start) < 10)

        let machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
            vcpuCount: 2, memorySize: 64 << 20,
            bootSource: .testGuest(TestGuestConfiguration(imagePath: try GuestArtifacts.testGuest(), workload: .spin)),
            console: DiscardingConsole()))
        let stopper = Thread { Thread.sleep(forTimeInterval: 0.5); machine.requestStop() }
        stopper.start()
        #expect(try machine.run(timeLimit: 30) == .stopRequested)
    }

    @Test func diskPatternSurvivesPowerOffAndVerifiesInASecondVM() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("sparse.img")
        let size: UInt64 = 6 << 30
        let seed: UInt64 = 0x1234_5678_9ABC
        let blocks: UInt64 = 64
        _ = try RawFileDiskBackend.createSparseFile(at: path, byteCount: size)

        let write = try runTestGuest(.diskWritePattern, arguments: [seed, blocks],
                                     disks: [try RawFileDiskBackend(path: path, identifier: "pattern-disk")])
        #expect(write.reason == .guestPoweredOff(status: 0), "\(write.console.text)")
        #expect(write.console.lines.contains("disk id: pattern-disk"))
        #expect(write.console.lines.contains("pci 00:01.0 1af4:1001 class 018000"))
        let stats = try #require(write.machine.diskStatistics.first)
        #expect(stats.writes == Int(blocks) && stats.flushes == 1 && stats.rejectedRequests == 0)

        // The host finds exactly the pattern: each block holds it, and nothing else was allocated.
        let offsets = (0..<blocks).map { i in ((size - 8192) / (blocks - 1) * i) & ~4095 }
        #expect(offsets.last! > 4 << 30)
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        for offset in offsets {
            try handle.seek(toOffset: offset)
            let data = try #require(try handle.read(upToCount: 8192))
            let words = data.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
            let expected = (0..<1024).map { mix64(seed ^ (offset + UInt64($0) * 8)) }
            #expect(words == expected, "pattern block at \(offset)")
        }
        let fd = handle.fileDescriptor
        var position: off_t = 0
        while true {
            let dataStart = lseek(fd, position, 3 /* SEEK_DATA */)
            if dataStart < 0 { break }
            let holeStart = lseek(fd, dataStart, 4 /* SEEK_HOLE */)
            let inside = offsets.contains { UInt64(dataStart) >= $0 && UInt64(holeStart) <= $0 + 8192 }
            #expect(inside, "unexpected data at \(dataStart)..<\(holeStart)")
            position = holeStart
        }

        let verify = try runTestGuest(.diskVerifyPattern, arguments: [seed, blocks], disks: [try RawFileDiskBackend(path: path)])
        #expect(verify.reason == .guestPoweredOff(status: 0), "\(verify.console.text)")
        #expect(verify.console.text.contains("pattern verified: \(blocks) blocks"))

        // The check can fail: another seed is a mismatch (result code 6).
        let wrong = try runTestGuest(.diskVerifyPattern, arguments: [seed + 1, blocks], disks: [try RawFileDiskBackend(path: path)])
        #expect(wrong.reason == .guestPoweredOff(status: TestGuestResult.verifyMismatch.rawValue))
    }

    @Test func hostileDescriptorChainsGetErrorsAndTheVMMSurvives() throws {
        let directory = try TemporaryDirectory()
        let disk = try RawFileDiskBackend.createSparseFile(at: directory.path("hostile.img"), byteCount: 16 << 20)
        let (reason, console, machine) = try runTestGuest(.hostileDescriptors, disks: [disk])
        #expect(reason == .guestPoweredOff(status: 0), "\(console.text)")
        let summary = try #require(console.lines.first { $0.hasPrefix("hostile: ") && $0.contains("cases passed") })
        #expect(summary == "hostile: 22 of 22 cases passed")
        #expect(!console.text.contains("FAILED"))
        let stats = try #require(machine.diskStatistics.first)
        // 12 error statuses, 2 chains whose status byte is unusable, 3 chains that cannot be walked.
        #expect(stats.rejectedRequests == 17)
        #expect(machine.diskDeviceStatus == [0x07])  // re-initialised after NEEDS_RESET
    }

    /// The guest as a hostile driver at the device's limits (Tools/guest/hostile_limits.c), with RAM
    /// above 4 GiB and vCPU 1 racing the ring: right answers, a VMM that keeps up, an intact disk.
    @Test func hostileLimitsGetTheRightAnswersAndTheVMMKeepsUp() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("limits.img")
        let disk = try RawFileDiskBackend.createSparseFile(at: path, byteCount: 256 << 20)
        let (reason, console, machine) = try runTestGuest(.hostileLimits, vcpus: 2, memory: (3 << 30) + (128 << 20),
                                                          disks: [disk], timeLimit: 60)
        #expect(reason == .guestPoweredOff(status: 0), "\(reason): \(console.text)")
        #expect(!console.text.contains("FAILED"), "\(console.lines.filter { $0.contains("FAILED") })")
        let summary = try #require(console.lines.first { $0.hasPrefix("limits: ") && $0.contains("cases passed") })
        let counts = summary.split(separator: " ").compactMap { Int($0) }
        #expect(counts.count == 2 && counts[0] == counts[1] && counts[0] >= 40, "\(summary)")
        #expect(machine.diskDeviceStatus == [0x07])
        // From the host: the pattern no request was allowed to touch, and the zeroed region.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let pattern = bytes.prefix(64 << 10).withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
        #expect(pattern == (0..<UInt64(8192)).map { mix64(0xa11ce ^ ($0 * 8)) })
        #expect(bytes[(1024 * 512)..<(1040 * 512)].allSatisfy { $0 == 0 })
    }

    @Test func badInputIsRejectedWithClearErrorsAndNothingLeaks() throws {
        let directory = try TemporaryDirectory()
        let guest = try GuestArtifacts.testGuest()
        let descriptorsBefore = Host.kvmFileDescriptorCount
        func configuration(_ boot: BootSource, vcpus: Int = 1, memory: UInt64 = 64 << 20,
                           disks: [any DiskBackend] = []) -> VirtualMachineConfiguration {
            VirtualMachineConfiguration(vcpuCount: vcpus, memorySize: memory, disks: disks, bootSource: boot,
                                        console: DiscardingConsole())
        }
        func expectError(_ code: HypervisorError.Code, mentioning fragments: [String],
                         _ configuration: VirtualMachineConfiguration) {
            do {
                _ = try VirtualMachine(configuration: configuration)
                Issue.record("expected \(code) mentioning \(fragments)")
            } catch {
                #expect(error.code == code, "\(error)")
                for fragment in fragments { #expect(error.message.contains(fragment), "\(error.message)") }
            }
        }
        let testGuest = { (path: String) in BootSource.testGuest(TestGuestConfiguration(imagePath: path, workload: .hello)) }

        // Truncated guest image.
        let truncated = directory.path("truncated.elf")
        try Data(try Data(contentsOf: URL(fileURLWithPath: guest)).prefix(200)).write(to: URL(fileURLWithPath: truncated))
        expectError(.invalidImage, mentioning: [truncated, "truncated"], configuration(testGuest(truncated)))
        // Corrupt kernel: neither ELF nor bzImage.
        let garbage = directory.path("garbage.bin")
        try Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: garbage))
        expectError(.invalidImage, mentioning: [garbage, "neither"], configuration(.linux(LinuxBootConfiguration(kernelPath: garbage))))
        // A bzImage cut inside its payload.
        let bzImage = directory.path("cut-bzImage")
        try Data(makeBzImage(payloadSize: 65536).prefix(8192)).write(to: URL(fileURLWithPath: bzImage))
        expectError(.invalidImage, mentioning: [bzImage, "payload", "truncated"], configuration(.linux(LinuxBootConfiguration(kernelPath: bzImage))))
        // Missing files.
        expectError(.invalidConfiguration, mentioning: ["/nonexistent/kernel"],
                    configuration(.linux(LinuxBootConfiguration(kernelPath: "/nonexistent/kernel"))))
        // More vCPUs or memory than the host allows, zero vCPUs, odd memory.
        expectError(.resourceLimit, mentioning: ["1000 vCPUs"], configuration(testGuest(guest), vcpus: 1000))
        expectError(.invalidConfiguration, mentioning: ["vcpuCount is 0"], configuration(testGuest(guest), vcpus: 0))
        expectError(.resourceLimit, mentioning: ["available"], configuration(testGuest(guest), memory: 62 << 30))
        expectError(.invalidConfiguration, mentioning: ["2 MiB"], configuration(testGuest(guest), memory: (64 << 20) + 4096))
        // A zero-size disk.
        expectError(.invalidConfiguration, mentioning: ["disk 0", "size 0"],
                    configuration(testGuest(guest), disks: [EmptyDisk()]))
        // A guest that does not fit in memory.
        expectError(.invalidConfiguration, mentioning: ["stacks"], configuration(testGuest(guest), vcpus: 254, memory: 16 << 20))

        #expect(Host.kvmFileDescriptorCount == descriptorsBefore)
    }

    @Test func debianKernelReachesTheConsoleAndParsesE820AndTheMPTable() throws {
        let linux = try GuestArtifacts.linux()
        let console = CapturingConsole()
        let commandLine = "console=ttyS0 earlyprintk=serial noxsave pci=conf1 acpi=off reboot=k panic=1 "
            + "i8042.nopnp i8042.noaux 8250.nr_uarts=1 tsc=reliable no_timer_check"
        let machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
            vcpuCount: 2, memorySize: 256 << 20,
            bootSource: .linux(LinuxBootConfiguration(kernelPath: linux.vmlinux, initrdPath: linux.initramfs,
                                                      commandLine: commandLine)),
            console: console))
        let finished = DispatchSemaphore(value: 0)
        let outcome = ResultBox()
        let runner = Thread {
            outcome.set(Result { try machine.run(timeLimit: 240) })
            finished.signal()
        }
        runner.start()
        let expected = [
            "Linux version 6.1", "Command line: \(commandLine)",
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
            "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
            "found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]",
            "MPTABLE: OEM ID: SWIFTVMM", "Processor #1", "IOAPIC[0]: apic_id 3, version 17, address 0xfec00000, GSI 0-23",
            "Processors: 2",
        ]
        let sawAll = console.wait(timeout: 180) { text in expected.allSatisfy { text.contains($0) } }
        machine.requestStop()
        finished.wait()
        for line in expected { #expect(console.text.contains(line), "missing console line: \(line)") }
        #expect(sawAll)
        let reason = try outcome.get()
        #expect(reason == .stopRequested || { if case .vcpuFailure = reason { true } else { false } }(), "\(reason)")
    }

    @Test func bzImageIsLoadedAtOneMegabyteWithItsSetupHeader() throws {
        let linux = try GuestArtifacts.linux()
        let file = try Data(contentsOf: URL(fileURLWithPath: linux.bzImage))
        let machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
            memorySize: 256 << 20, bootSource: .linux(LinuxBootConfiguration(kernelPath: linux.bzImage, commandLine: "console=ttyS0")),
            console: DiscardingConsole()))
        let setupSize = (Int(file[0x1F1]) + 1) * 512
        #expect(try machine.memory.read(at: 0x10_0000, count: 4096) == Array(file[setupSize..<setupSize + 4096]))
        let zeroPage = try machine.memory.read(at: 0x7000, count: 4096)
        #expect(Array(zeroPage[0x1F1..<0x210]) == Array(file[0x1F1..<0x210]))  // setup header copied
        #expect(zeroPage[0x210] == 0xFF)                                          // type_of_loader
        #expect(try machine.memory.load(UInt32.self, at: 0x7000 + 0x228) == 0x20000)
        #expect(String(decoding: try machine.memory.read(at: 0x20000, count: 13), as: UTF8.self) == "console=ttyS0")
        // The decompressor runs (emulated, slowly, on kvm_pvm) until the time limit.
        #expect(try machine.run(timeLimit: 1) == .timedOut)
    }
}

/// A disk that reports zero bytes.
struct EmptyDisk: DiskBackend {
    var byteCount: UInt64 { 0 }
    var identifier: String { "empty" }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {}
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {}
    func flush() throws(DiskError) {}
    func discard(offset: UInt64, length: UInt64) throws(DiskError) {}
}

/// Passes a result from the VM thread to the test.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<PowerOffReason, any Error>?

    func set(_ value: Result<PowerOffReason, any Error>) {
        lock.lock()
        result = value
        lock.unlock()
    }

    func get() throws -> PowerOffReason {
        lock.lock()
        defer { lock.unlock() }
        guard let result else { throw HypervisorError(.invalidState, "the VM thread produced no result") }
        return try result.get()
    }
}
