// vm-run: boots a VM with the Hypervisor library and reports how it ended (used by the benchmark
// and for manual runs; `vmctl` is the user-facing tool).
import ArgumentParser
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

@main
struct VMRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm-run", abstract: "Run a VM: the test guest or a Linux kernel, with raw-file disks.")

    @Option(help: "Test guest ELF image (Tools/scripts/build-guest.sh builds .cache/guest/testguest.elf).")
    var guest: String?
    @Option(help: "Workload number for the test guest (see TestGuestWorkload).")
    var workload: UInt32 = 0
    @Option(parsing: .upToNextOption, help: "Workload arguments (up to 8 integers).")
    var arguments: [UInt64] = []
    @Option(help: "Linux kernel (bzImage or vmlinux).")
    var kernel: String?
    @Option(help: "Initrd for the Linux kernel.")
    var initrd: String?
    @Option(help: "Kernel command line.")
    var commandLine: String = LinuxBootConfiguration.defaultCommandLine
    @Option(help: "vCPU count.")
    var cpus: Int = 1
    @Option(help: "Guest memory in MiB.")
    var memory: UInt64 = 128
    @Option(parsing: .singleValue, help: "Raw disk image (repeatable).")
    var disk: [String] = []
    @Option(help: "Stop after this many seconds.")
    var timeout: Double?
    @Option(help: "Also append the console to this file.")
    var log: String?
    @Flag(help: "Print a machine-readable report (markers, memory) after the run.")
    var report = false
    @Flag(help: "After a disk-throughput run, measure the same I/O pattern directly on a raw file next to the disk.")
    var rawBaseline = false

    func run() throws {
        let boot: BootSource
        if let guest {
            guard let kind = TestGuestWorkload(rawValue: workload) else {
                throw ValidationError("unknown workload \(workload)")
            }
            boot = .testGuest(TestGuestConfiguration(imagePath: guest, workload: kind, arguments: arguments))
        } else if let kernel {
            boot = .linux(LinuxBootConfiguration(kernelPath: kernel, initrdPath: initrd, commandLine: commandLine))
        } else {
            throw ValidationError("give --guest or --kernel")
        }
        var sinks: [any ConsoleSink] = [StandardOutputConsole()]
        if let log { sinks.append(try FileConsole(path: log)) }
        let disks: [any DiskBackend] = try disk.map { try RawFileDiskBackend(path: $0) }
        let machine = try VirtualMachine(configuration: VirtualMachineConfiguration(
            vcpuCount: cpus, memorySize: memory << 20, disks: disks, bootSource: boot, console: TeeConsole(sinks)))
        let reason = try machine.run(timeLimit: timeout)
        if report {
            for marker in machine.guestMarkers {
                print("marker \(marker.code) vcpu \(marker.vcpu) monotonic_ns \(marker.monotonicNanoseconds) realtime_ns \(marker.realtimeNanoseconds)")
            }
            print("guest_resident_bytes \(machine.memory.residentBytes)")
            print("vmm_rss_bytes \(statusField("VmRSS:"))")
            print("vmm_rss_anon_bytes \(statusField("RssAnon:"))")
            print("vmm_rss_file_bytes \(statusField("RssFile:"))")
        }
        if rawBaseline, let first = disk.first, arguments.count >= 1 {
            try measureRawFile(nextTo: first, total: arguments[0], request: arguments.count > 1 ? arguments[1] : 1 << 20,
                               depth: arguments.count > 2 ? Int(arguments[2]) : 8)
        }
        print("vm-run: \(reason)")
        if case .guestPoweredOff(let status) = reason { throw ExitCode(Int32(truncatingIfNeeded: status)) }
        throw ExitCode(reason == .stopRequested ? 0 : 125)
    }

    /// Writes then reads `total` bytes in `request`-byte pieces through a RawFileDiskBackend on a
    /// fresh sparse file, with the same flush as the guest and the same buffer footprint
    /// (`depth` request buffers used in turn), and prints the times.
    func measureRawFile(nextTo path: String, total: UInt64, request: UInt64, depth: Int) throws {
        let baselinePath = path + ".baseline"
        defer { unlink(baselinePath) }
        let backend = try RawFileDiskBackend.createSparseFile(at: baselinePath, byteCount: total)
        let buffers = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(request) * depth, alignment: 4096)
        defer { buffers.deallocate() }
        for i in stride(from: 0, to: buffers.count, by: 8) { buffers.storeBytes(of: UInt64(i) &* 0x9E37, toByteOffset: i, as: UInt64.self) }
        func buffer(_ offset: UInt64) -> UnsafeMutableRawBufferPointer {
            let slot = Int(offset / request) % depth * Int(request)
            return UnsafeMutableRawBufferPointer(rebasing: buffers[slot..<slot + Int(request)])
        }
        func now() -> UInt64 {
            var time = timespec()
            clock_gettime(CLOCK_MONOTONIC, &time)
            return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
        }
        let writeStart = now()
        for offset in stride(from: UInt64(0), to: total, by: Int(request)) {
            try backend.write(UnsafeRawBufferPointer(buffer(offset)), at: offset)
        }
        try backend.flush()
        let writeEnd = now()
        for offset in stride(from: UInt64(0), to: total, by: Int(request)) {
            try backend.read(into: buffer(offset), at: offset)
        }
        let readEnd = now()
        print("raw_write_ns \(writeEnd - writeStart)")
        print("raw_read_ns \(readEnd - writeEnd)")
    }

    /// A "kB" field of /proc/self/status, in bytes (VmRSS, RssAnon, RssFile).
    func statusField(_ name: String) -> UInt64 {
        guard let file = fopen("/proc/self/status", "re") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, 256, file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix(name) {
                return (UInt64(text.split(separator: " ")[1]) ?? 0) * 1024
            }
        }
        return 0
    }
}
