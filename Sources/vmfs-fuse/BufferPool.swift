import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// Page-aligned buffers for data requests, reused so that a 1 MiB READ or WRITE costs no
/// allocation (a fresh 1 MiB buffer is an mmap, page faults and an munmap).
///
/// The device is opened with `O_DIRECT`, which needs aligned memory: WRITE payloads arrive at an
/// unaligned place in libfuse's receive buffer, so they are copied here once and written from
/// here, instead of through a bounce buffer allocated per request inside the device layer.
final class BufferPool: Sendable {
    /// Size of each pooled buffer: the largest READ or WRITE request.
    let bufferSize: Int
    private let alignment = 4096
    private let retained: Int
    /// Free buffers, as addresses (pointers are not Sendable; the mutex owns them).
    private let free = Mutex<[UInt]>([])

    init(bufferSize: Int, retained: Int = 64) {
        self.bufferSize = (bufferSize + 4095) / 4096 * 4096
        self.retained = retained
    }

    deinit {
        free.withLock { list in
            for address in list { Glibc.free(UnsafeMutableRawPointer(bitPattern: address)) }
            list.removeAll()
        }
    }

    /// Runs `body` with an aligned buffer of at least `count` bytes (exactly `count` long).
    func withBuffer<R, E: Error>(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        if count > bufferSize {
            let memory = allocate(count)
            defer { Glibc.free(memory) }
            return try body(UnsafeMutableRawBufferPointer(start: memory, count: count))
        }
        let memory = free.withLock { $0.popLast() }.flatMap { UnsafeMutableRawPointer(bitPattern: $0) } ?? allocate(bufferSize)
        defer {
            let kept = free.withLock { list -> Bool in
                guard list.count < retained else { return false }
                list.append(UInt(bitPattern: memory))
                return true
            }
            if !kept { Glibc.free(memory) }
        }
        return try body(UnsafeMutableRawBufferPointer(start: memory, count: count))
    }

    private func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        var memory: UnsafeMutableRawPointer?
        let size = max((count + alignment - 1) / alignment * alignment, alignment)
        guard posix_memalign(&memory, alignment, size) == 0, let memory else {
            fatalError("out of memory allocating a \(size)-byte I/O buffer")
        }
        return memory
    }
}
