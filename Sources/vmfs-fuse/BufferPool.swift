#if canImport(Glibc)
internal import Glibc
#endif

/// Page-aligned buffers for data requests: one per worker thread, kept for the thread's life,
/// so a 1 MiB READ or WRITE costs no allocation (a fresh 1 MiB buffer is an mmap, page faults
/// and an munmap) and no lock (a shared free list was the hottest lock of the daemon under
/// many parallel 4 KiB reads).
///
/// The device is opened with `O_DIRECT`, which needs aligned memory: WRITE payloads arrive at an
/// unaligned place in libfuse's receive buffer, so they are copied here once and written from
/// here, instead of through a bounce buffer allocated per request inside the device layer.
final class BufferPool: @unchecked Sendable {
    /// Size of each thread's buffer: the largest READ or WRITE request.
    let bufferSize: Int
    private static let alignment = 4096
    /// The calling thread's idle buffer (absent while in use, so nested use gets its own); nil
    /// when the process has no thread-specific key left (then every request allocates).
    private let key: pthread_key_t?

    init(bufferSize: Int) {
        self.bufferSize = (bufferSize + Self.alignment - 1) / Self.alignment * Self.alignment
        var created = pthread_key_t()
        key = pthread_key_create(&created) { memory in free(memory) } == 0 ? created : nil
    }

    /// Gives the key back (a process has only `PTHREAD_KEYS_MAX`, 1024, and a process that mounts
    /// many times, such as the fuzzer, would run out). Threads that exited freed their buffers
    /// through the key's destructor; the calling thread's is freed here. A buffer still held by a
    /// thread that outlives the pool would leak: the daemon's session threads end before it.
    deinit {
        guard let key else { return }
        if let idle = pthread_getspecific(key) { free(idle) }
        pthread_key_delete(key)
    }

    /// Runs `body` with an aligned buffer of exactly `count` bytes.
    func withBuffer<R, E: Error>(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        if count > bufferSize {
            let memory = Self.allocate(count)
            defer { free(memory) }
            return try body(UnsafeMutableRawBufferPointer(start: memory, count: count))
        }
        guard let key else {
            let memory = Self.allocate(bufferSize)
            defer { free(memory) }
            return try body(UnsafeMutableRawBufferPointer(start: memory, count: count))
        }
        let memory: UnsafeMutableRawPointer
        if let idle = pthread_getspecific(key) {
            memory = idle
            pthread_setspecific(key, nil)
        } else {
            memory = Self.allocate(bufferSize)
        }
        defer {
            if pthread_getspecific(key) == nil { pthread_setspecific(key, memory) } else { free(memory) }
        }
        return try body(UnsafeMutableRawBufferPointer(start: memory, count: count))
    }

    private static func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        var memory: UnsafeMutableRawPointer?
        let size = max((count + alignment - 1) / alignment * alignment, alignment)
        guard posix_memalign(&memory, alignment, size) == 0, let memory else {
            fatalError("out of memory allocating a \(size)-byte I/O buffer")
        }
        return memory
    }
}
