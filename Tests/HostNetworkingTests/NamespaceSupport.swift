import Foundation
import CVMFSLinux
import HostNetworking
import Hypervisor
import SystemSupport
import Synchronization

/// True when this process may make network namespaces and devices (root, iproute2, nftables).
let canMakeNetworks = getuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0
    && NetworkCommands().path(of: .ip) != nil && NetworkCommands().path(of: .nft) != nil && NetworkCommands().path(of: .tc) != nil

/// Runs `body` on a thread of its own moved into a new, empty network namespace: the bridges,
/// rules and devices it makes (and the commands and threads it starts) live there and vanish with
/// it. The rest of the test process stays in its namespace. `body` runs as part of the calling
/// task (on a task executor whose thread is that one), so its expectations belong to the test.
func inNetworkNamespace<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let executor = NamespaceExecutor()
    defer { executor.shutdown() }
    guard executor.unshareResult == 0 else {
        throw NetworkError(.failed, "unshare(CLONE_NEWNET): errno \(-executor.unshareResult)")
    }
    return try await withTaskExecutorPreference(executor) { try body() }
}

/// A task executor with one thread, which first moves itself into a new network namespace.
final class NamespaceExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false
    /// 0, or -errno of the unshare.
    private(set) var unshareResult: Int32 = 0

    init() {
        let started = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            unshareResult = cvmfs_unshare_network()
            started.signal()
            while let job = next() { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
        thread.start()
        started.wait()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.withLock {
            jobs.append(job)
            condition.signal()
        }
    }

    /// Lets the thread end once its queue is empty.
    func shutdown() {
        condition.withLock {
            stopped = true
            condition.signal()
        }
    }

    private func next() -> UnownedJob? {
        condition.withLock {
            while jobs.isEmpty && !stopped { condition.wait() }
            return jobs.isEmpty ? nil : jobs.removeFirst()
        }
    }
}

/// `ip` in the current thread's namespace; fails the test's setup when it fails.
@discardableResult
func ip(_ arguments: String) throws -> String {
    try NetworkCommands().run(.ip, arguments.split(separator: " ").map(String.init), purpose: "test setup")
}

/// One end of a port: a TAP descriptor with a 12-byte virtio-net header before every frame.
struct TapEnd {
    let descriptor: Int32

    func send(_ frame: [UInt8]) {
        let record = [UInt8](repeating: 0, count: 12) + frame
        _ = record.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }

    /// Frames that arrive within `timeout` seconds (header removed).
    func receive(timeout: Double = 0.3) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 70_000)
        while Date() < deadline {
            var ready: Int32 = 0, unused: Int32 = 0
            guard cvmfs_poll_two(descriptor, -1, 20, &ready, &unused) > 0, ready != 0 else { continue }
            let n = read(descriptor, &buffer, buffer.count)
            if n > 12 { frames.append(Array(buffer[12..<n])) }
        }
        return frames
    }
}

/// An Ethernet frame (EtherType 0x88B5) with a marker byte to recognise it.
func testFrame(to destination: MACAddress, from source: MACAddress, mark: UInt8) -> [UInt8] {
    destination.bytes + source.bytes + [0x88, 0xB5, mark] + [UInt8](repeating: 0, count: 45)
}
