internal import CKVM
#if canImport(Glibc)
internal import Glibc
#endif

/// Page-level operations on guest memory for migration and snapshots: which pages may hold
/// data, discarding pages, and resolving faults of a post-copy migration (userfaultfd).
extension GuestMemory {
    /// Bytes per page of every page operation.
    public static var bytesPerPage: UInt64 { pageSize }

    /// The pages of `region` that may hold data (bit set): those never touched read as zeros
    /// without being looked at. From `/proc/self/pagemap` (present or swapped).
    public func populatedPages(_ region: GuestMemoryRegion) throws(HypervisorError) -> [UInt64] {
        let pages = region.size / Self.pageSize
        var bitmap = [UInt64](repeating: 0, count: Int((pages + 63) / 64))
        let result = bitmap.withUnsafeMutableBufferPointer { words in
            ckvm_populated_pages(base + Int(region.hostOffset), pages, words.baseAddress)
        }
        guard result == 0 else { throw .systemCall("reading /proc/self/pagemap", errno: -result) }
        return bitmap
    }

    /// True when the page at `address` (inside guest RAM) is all zeros.
    public func isZeroPage(at address: UInt64) -> Bool {
        guard let page = hostPointer(at: address, count: Self.pageSize) else { return false }
        let words = page.assumingMemoryBound(to: UInt64.self)
        var accumulated: UInt64 = 0
        for index in stride(from: 0, to: Int(Self.pageSize / 8), by: 8) {
            accumulated |= words[index] | words[index + 1] | words[index + 2] | words[index + 3]
                | words[index + 4] | words[index + 5] | words[index + 6] | words[index + 7]
            if accumulated != 0 { return false }
        }
        return true
    }

    /// Makes `[address, address + count)` missing again (`MADV_DONTNEED`): it reads as zeros, or
    /// faults into a registered ``GuestMemoryFaults``.
    public func discard(_ address: UInt64, count: UInt64) throws(HypervisorError) {
        guard let pointer = hostPointer(at: address, count: count) else {
            throw HypervisorError(.guestMemory, "discard of 0x\(String(address, radix: 16)) + \(count) is outside guest RAM")
        }
        let result = ckvm_discard_pages(pointer, count)
        guard result == 0 else { throw .systemCall("madvise(MADV_DONTNEED) of guest memory", errno: -result) }
    }

    /// The guest-physical address of host address `pointer` inside the mapping, if it is guest RAM.
    func guestAddress(ofHost pointer: UInt64) -> UInt64? {
        let start = UInt64(UInt(bitPattern: base))
        guard pointer >= start, pointer - start < size else { return nil }
        let offset = pointer - start
        for region in regions where offset >= region.hostOffset && offset - region.hostOffset < region.size {
            return region.guestAddress + (offset - region.hostOffset)
        }
        return nil
    }
}

/// Missing-page faults on guest memory, for post-copy migration: every access (by a vCPU, by
/// KVM on its behalf, or by a device thread) to a missing page blocks until the page is
/// installed with ``install(_:at:)`` or ``installZeros(at:count:)``.
public final class GuestMemoryFaults: @unchecked Sendable {
    private let memory: GuestMemory
    private let descriptor: Int32
    private var closed = false

    /// Registers the whole of `memory` for missing-page faults.
    public init(memory: GuestMemory) throws(HypervisorError) {
        self.memory = memory
        let fd = ckvm_userfaultfd_open()
        guard fd >= 0 else { throw .systemCall("userfaultfd", errno: -fd) }
        descriptor = fd
        let registered = ckvm_userfaultfd_register(fd, memory.base, memory.size)
        guard registered == 0 else {
            Glibc.close(fd)
            throw .systemCall("UFFDIO_REGISTER of \(memory.size) bytes of guest memory", errno: -registered)
        }
    }

    deinit { close() }

    /// Waits up to `timeoutMilliseconds` for the next fault; returns the guest-physical address of
    /// the faulting page, or nil when none came.
    public func nextFault(timeoutMilliseconds: Int32) throws(HypervisorError) -> UInt64? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, timeoutMilliseconds)
        if ready < 0 {
            if errno == EINTR { return nil }
            throw .systemCall("poll on the userfaultfd")
        }
        guard ready > 0 else { return nil }
        var address: UInt64 = 0
        let result = ckvm_userfaultfd_read(descriptor, &address)
        guard result >= 0 else { throw .systemCall("reading the userfaultfd", errno: -result) }
        guard result == 1 else { return nil }
        return memory.guestAddress(ofHost: address & ~(GuestMemory.pageSize - 1))
    }

    /// Installs `bytes` (whole pages) at `address` and wakes whoever waits for them. A page
    /// already installed is left alone.
    public func install(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws(HypervisorError) {
        guard let base = bytes.baseAddress, let target = memory.hostPointer(at: address, count: UInt64(bytes.count)),
              bytes.count % Int(GuestMemory.pageSize) == 0 else {
            throw HypervisorError(.guestMemory, "page install at 0x\(String(address, radix: 16)) + \(bytes.count) is outside guest RAM or not whole pages")
        }
        let result = ckvm_userfaultfd_copy(descriptor, target, base, UInt64(bytes.count))
        if result == -EEXIST {
            // Some of the range is there already: install page by page, keeping what is there.
            for offset in stride(from: 0, to: bytes.count, by: Int(GuestMemory.pageSize)) {
                let one = ckvm_userfaultfd_copy(descriptor, target + offset, base + offset, GuestMemory.pageSize)
                guard one == 0 || one == -EEXIST else { throw .systemCall("UFFDIO_COPY", errno: -one) }
            }
            return
        }
        guard result == 0 else { throw .systemCall("UFFDIO_COPY at 0x\(String(address, radix: 16))", errno: -result) }
    }

    /// Installs zero pages at `address` (a page the source never wrote).
    public func installZeros(at address: UInt64, count: UInt64) throws(HypervisorError) {
        guard let target = memory.hostPointer(at: address, count: count) else {
            throw HypervisorError(.guestMemory, "zero-page install at 0x\(String(address, radix: 16)) is outside guest RAM")
        }
        let result = ckvm_userfaultfd_zero(descriptor, target, count)
        guard result == 0 || result == -EEXIST else { throw .systemCall("UFFDIO_ZEROPAGE", errno: -result) }
    }

    /// Unregisters the memory (every page is present) and closes the descriptor.
    public func close() {
        guard !closed else { return }
        closed = true
        _ = ckvm_userfaultfd_unregister(descriptor, memory.base, memory.size)
        Glibc.close(descriptor)
    }
}
