internal import CURing
#if canImport(Glibc)
internal import Glibc
#endif

/// A small pool of io_uring instances shared by the threads of one device.
///
/// A batch takes a ring from the pool (or makes one), submits every request, waits for all
/// completions and returns the ring. Short transfers are finished with plain `pread`/`pwrite`.
final class IOUringPool: @unchecked Sendable {
    private let idle = Monitor<[UnsafeMutablePointer<io_uring>]>([])
    private let depth: UInt32 = 128
    private let available: Bool

    init?() {
        // Probe once: io_uring can be disabled by sysctl or a seccomp policy.
        let probe = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        guard io_uring_queue_init(8, probe, 0) == 0 else {
            probe.deallocate()
            return nil
        }
        available = true
        idle.withLock { $0.append(probe) }
    }

    deinit {
        idle.withLock { rings in
            for ring in rings {
                io_uring_queue_exit(ring)
                ring.deallocate()
            }
            rings.removeAll()
        }
    }

    private func take() -> UnsafeMutablePointer<io_uring>? {
        if let ring = idle.withLock({ $0.popLast() }) { return ring }
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        guard io_uring_queue_init(depth, ring, 0) == 0 else {
            ring.deallocate()
            return nil
        }
        return ring
    }

    private func give(_ ring: UnsafeMutablePointer<io_uring>) {
        idle.withLock { $0.append(ring) }
    }

    /// Runs `requests` on `descriptor` and returns when all completed.
    func run(descriptor: Int32, requests: [DeviceRequest]) throws(VMFSError) {
        guard available, let ring = take() else {
            throw VMFSError(.unsupported, "io_uring is not available")
        }
        defer { give(ring) }
        let capacity = Int(ring.pointee.sq.ring_entries)
        var next = 0
        var inFlight = 0
        var shortTransfers: [(index: Int, done: Int)] = []
        var failure: VMFSError?
        while next < requests.count || inFlight > 0 {
            while next < requests.count && inFlight < capacity, let sqe = io_uring_get_sqe(ring) {
                let request = requests[next]
                switch request.kind {
                case .read:
                    io_uring_prep_read(sqe, descriptor, request.buffer.baseAddress, UInt32(request.buffer.count), request.offset)
                case .write:
                    io_uring_prep_write(sqe, descriptor, request.buffer.baseAddress, UInt32(request.buffer.count), request.offset)
                }
                io_uring_sqe_set_data64(sqe, UInt64(next))
                next += 1
                inFlight += 1
            }
            let submitted = io_uring_submit(ring)
            if submitted < 0 && submitted != -EINTR && submitted != -EAGAIN {
                failure = VMFSError.system("io_uring_submit", errno: -submitted)
                break
            }
            var cqe: UnsafeMutablePointer<io_uring_cqe>?
            let waited = io_uring_wait_cqe(ring, &cqe)
            if waited == -EINTR { continue }
            guard waited == 0, let completion = cqe else {
                failure = VMFSError.system("io_uring_wait_cqe", errno: -waited)
                break
            }
            let index = Int(io_uring_cqe_get_data64(completion))
            let result = completion.pointee.res
            io_uring_cqe_seen(ring, completion)
            inFlight -= 1
            if result < 0 {
                if failure == nil {
                    failure = VMFSError.system(requests[index].kind == .read ? "io_uring read" : "io_uring write",
                                               errno: -result, offset: requests[index].offset)
                }
            } else if Int(result) < requests[index].buffer.count {
                shortTransfers.append((index, Int(result)))
            }
        }
        // Drain anything still in flight after an error so no buffer is used after we return.
        while inFlight > 0 {
            var cqe: UnsafeMutablePointer<io_uring_cqe>?
            if io_uring_wait_cqe(ring, &cqe) == 0, let completion = cqe {
                io_uring_cqe_seen(ring, completion)
                inFlight -= 1
            } else {
                break
            }
        }
        if let failure { throw failure }
        for (index, done) in shortTransfers {
            let request = requests[index]
            let rest = UnsafeMutableRawBufferPointer(rebasing: request.buffer[done...])
            try finish(descriptor: descriptor, kind: request.kind, buffer: rest, offset: request.offset + UInt64(done))
        }
    }

    private func finish(descriptor: Int32, kind: DeviceRequest.Kind, buffer: UnsafeMutableRawBufferPointer,
                        offset: UInt64) throws(VMFSError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = kind == .read
                ? pread(descriptor, base + done, buffer.count - done, off_t(offset) + off_t(done))
                : pwrite(descriptor, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 && kind == .read {
                (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            if n < 0 && errno == EINTR { continue }
            throw VMFSError.system(kind == .read ? "pread" : "pwrite", errno: n < 0 ? errno : EIO,
                                   offset: offset + UInt64(done))
        }
    }
}
