import Testing
@testable import VMFSCore

/// What a mount holds is given back when it ends: a process that mounts and unmounts volumes
/// for a long time (an agent, a rejoining host) must not keep sessions, their caches and their
/// devices' file descriptors alive. LeakSanitizer found a reference cycle (lock manager →
/// recovery → lock manager) while fuzzing.
@Suite("Resource lifetime")
struct ResourceLifetimeTests {
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
}
