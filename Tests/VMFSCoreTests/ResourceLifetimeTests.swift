import Testing
import Synchronization
@testable import VMFSCore
import CVMFSLinux
#if canImport(Glibc)
import Glibc
#endif

/// What a mount holds is given back when it ends: a process that mounts and unmounts volumes
/// for a long time (an agent, a rejoining host) must not keep sessions, their caches, their
/// devices' file descriptors or their threads' stacks alive.
@Suite("Resource lifetime")
struct ResourceLifetimeTests {
    /// Found by LeakSanitizer while fuzzing: a reference cycle (lock manager → recovery → lock
    /// manager) kept the device of every unmounted volume, and so its file descriptor.
    @Test func anUnmountedVolumeFreesItsSessionAndDevice() throws {
        weak var session: Session?
        weak var device: MemoryBlockDevice?
        do {
            let memory = try makeMemoryVolume()
            device = memory
            let volume = try Volume.mount(device: memory, options: hostOptions("h"))
            session = try volume.current()
            let file = try volume.create("f", access: .readWrite)
            try file.write(bytes: [1, 2, 3], at: 0)
            try file.close()
            try volume.unmount()
        }
        #expect(session == nil, "the session outlived its unmount")
        #expect(device == nil, "the device outlived its unmount")
    }

    /// Found by ThreadSanitizer ("thread leak"): the threads nobody joins (orphan cleanup at
    /// every mount, recoveries, rejoins) were not detached either, so each kept its stack mapped
    /// for the rest of the process. They are started with `BackgroundThread.detach`, whose
    /// thread is detached by the time it runs on.
    @Test func aThreadNobodyJoinsIsDetached() throws {
        final class Probe: Sendable {
            let detachReturned = Atomic<Bool>(false)
            let detached = Mutex<Int32?>(nil)
        }
        let probe = Probe()
        BackgroundThread.detach(name: "fire-and-forget") {
            while !probe.detachReturned.load(ordering: .acquiring) { usleep(1000) }
            let state = cvmfs_thread_is_detached()
            probe.detached.withLock { $0 = state }
        }
        probe.detachReturned.store(true, ordering: .releasing)
        var state: Int32?
        for _ in 0..<1000 where state == nil {
            usleep(10_000)
            state = probe.detached.withLock { $0 }
        }
        #expect(state == 1, "the thread was not detached (\(String(describing: state)))")
    }
}
