import Testing
import Synchronization
@testable import VMFSCore
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
    /// thread is detached: asked to detach itself, glibc answers EINVAL for one that already is.
    @Test func aThreadNobodyJoinsIsDetached() throws {
        final class Probe: Sendable {
            let detachReturned = Atomic<Bool>(false)
            let selfDetach = Mutex<Int32?>(nil)
        }
        let probe = Probe()
        BackgroundThread.detach(name: "fire-and-forget") {
            while !probe.detachReturned.load(ordering: .acquiring) { usleep(1000) }
            let result = pthread_detach(pthread_self())
            probe.selfDetach.withLock { $0 = result }
        }
        probe.detachReturned.store(true, ordering: .releasing)
        var result: Int32?
        for _ in 0..<1000 where result == nil {
            usleep(10_000)
            result = probe.selfDetach.withLock { $0 }
        }
        #expect(result == EINVAL, "the thread was still joinable (pthread_detach returned \(String(describing: result)))")
    }
}
