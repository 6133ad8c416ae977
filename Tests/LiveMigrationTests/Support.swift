import Foundation
import Hypervisor
import LiveMigration
import SystemSupport
import Testing

/// True when /dev/kvm can be opened read-write.
let hasKVM = access("/dev/kvm", R_OK | W_OK) == 0

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The test guest (Tools/scripts/build-guest.sh builds it when its sources changed).
func testGuestImage() throws -> String {
    let process = Process()
    process.executableURL = repositoryRoot.appendingPathComponent("Tools/scripts/build-guest.sh")
    process.arguments = ["--test-guest-only"]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw HypervisorError(.invalidConfiguration, "build-guest.sh failed") }
    return repositoryRoot.appendingPathComponent(".cache/guest/testguest.elf").path
}

/// A console that keeps what the guest printed, for assertions.
final class RecordingConsole: ConsoleSink, @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []

    func write(_ data: [UInt8]) {
        lock.lock()
        bytes += data
        lock.unlock()
    }

    func flush() {}

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Waits up to `seconds` for `predicate` to hold on the text.
    func wait(seconds: Double, _ predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if predicate(text) { return true }
            usleep(5_000)
        }
        return predicate(text)
    }
}

/// The memory-generations guest: `writers` vCPUs of `bytes` each (plus the gap probe when
/// `probe`), powering off with success after `migrations` verified migrations.
func memoryGuestConfiguration(image: String, vcpus: Int, bytes: UInt64 = 8 << 20, rate: UInt64 = 0, passes: UInt64 = 0,
                              probe: Bool = false, migrations: UInt64 = 1, memory: UInt64 = 64 << 20,
                              console: any ConsoleSink, disks: [any DiskBackend] = []) -> VirtualMachineConfiguration {
    VirtualMachineConfiguration(
        vcpuCount: vcpus, memorySize: memory, disks: disks,
        bootSource: .testGuest(TestGuestConfiguration(imagePath: image, workload: .memoryGenerations,
                                                      arguments: [bytes, rate, passes, probe ? 1 : 0, migrations, 0x5eed])),
        console: console)
}

/// A connected pair of stream sockets wrapped as migration streams with matching keys.
func streamPairs(_ count: Int, stallMilliseconds: Int32 = 3000) throws -> (source: [MigrationStream], destination: [MigrationStream]) {
    var sources: [MigrationStream] = []
    var destinations: [MigrationStream] = []
    for index in 0..<count {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw HypervisorError(.invalidConfiguration, "socketpair failed")
        }
        let keys = StreamKeys(send: (0..<32).map { UInt8($0) }, receive: (0..<32).map { UInt8(255 - $0) })
        sources.append(try MigrationStream(socket: OwnedDescriptor(fds[0]), keys: keys, index: index, stallTimeoutMilliseconds: stallMilliseconds))
        destinations.append(try MigrationStream(socket: OwnedDescriptor(fds[1]), keys: keys.reversed, index: index,
                                                stallTimeoutMilliseconds: stallMilliseconds))
    }
    return (sources, destinations)
}

/// Runs `machine` on a thread of its own; the result arrives in the box.
final class RunningMachine: @unchecked Sendable {
    let machine: VirtualMachine
    private let lock = NSLock()
    private var result: PowerOffReason?
    private var thread: Thread?

    init(_ machine: VirtualMachine, timeLimit: Double = 120) {
        self.machine = machine
        let thread = Thread { [self] in
            let reason = (try? machine.run(timeLimit: timeLimit)) ?? .stopRequested
            lock.lock()
            result = reason
            lock.unlock()
        }
        self.thread = thread
        thread.start()
    }

    var reason: PowerOffReason? {
        lock.lock()
        defer { lock.unlock() }
        return result
    }

    /// Waits for the machine to stop.
    func wait(seconds: Double) -> PowerOffReason? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let reason { return reason }
            usleep(5_000)
        }
        return reason
    }
}
