import Testing
@testable import VMFSFuse
#if canImport(Glibc)
import Glibc
#endif

@Suite("The daemon's per-thread I/O buffers")
struct BufferPoolTests {
    /// Each pool takes a thread-specific key; a process has 1024. Pools made and dropped (one per
    /// mount: the fuzzer mounts once per input) must give theirs back, or libfuse's own
    /// `fuse_session_new` fails after about a thousand mounts.
    @Test func poolsGiveTheirThreadKeyBack() throws {
        for round in 0..<1500 {
            let pool = BufferPool(bufferSize: 8192)
            let filled = pool.withBuffer(count: 4096) { buffer -> Bool in
                buffer.storeBytes(of: UInt32(round), as: UInt32.self)
                return buffer.count == 4096 && Int(bitPattern: buffer.baseAddress) % 4096 == 0
            }
            #expect(filled, "round \(round): an aligned 4096-byte buffer")
        }
        var key = pthread_key_t()
        #expect(pthread_key_create(&key, nil) == 0, "thread-specific keys are left after 1500 pools")
        pthread_key_delete(key)
    }
}
