internal import CKVM
#if canImport(Glibc)
internal import Glibc
#endif

/// A contiguous range of guest-physical RAM and where it lives in the host mapping.
public struct GuestMemoryRegion: Sendable, Equatable {
    /// First guest-physical address of the region.
    public var guestAddress: UInt64
    /// Length of the region in bytes.
    public var size: UInt64
    /// Byte offset of the region inside the single host mapping.
    public var hostOffset: UInt64

    /// One past the last guest-physical address of the region.
    public var guestEnd: UInt64 { guestAddress + size }
}

/// Guest RAM: one anonymous private host mapping, split into guest-physical regions around the
/// 32-bit MMIO hole ([3 GiB, 4 GiB)). Every access is bounds-checked against the regions, so a
/// guest-supplied address can never reach outside guest memory.
///
/// The mapping is shared by all vCPU and device threads; the guest itself writes it concurrently,
/// so the type is `@unchecked Sendable` by nature, like physical RAM.
public final class GuestMemory: @unchecked Sendable {
    /// Start of the 32-bit MMIO hole (IOAPIC, LAPIC, TSS pages live above it).
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    /// RAM that does not fit below the hole continues at 4 GiB.
    public static let highMemoryStart: UInt64 = 0x1_0000_0000
    static let pageSize: UInt64 = 4096

    /// Total RAM in bytes.
    public let size: UInt64
    /// The guest-physical layout.
    public let regions: [GuestMemoryRegion]
    let base: UnsafeMutableRawPointer
    /// Pages the VMM wrote while dirty tracking is on (see ``markDirty(_:count:)``).
    let vmmWrites: DirtyPageBitmap

    /// The guest-physical regions for `size` bytes of RAM.
    public static func layout(forSize size: UInt64) -> [GuestMemoryRegion] {
        let low = min(size, mmioHoleStart)
        var regions = [GuestMemoryRegion(guestAddress: 0, size: low, hostOffset: 0)]
        if size > low {
            regions.append(GuestMemoryRegion(guestAddress: highMemoryStart, size: size - low, hostOffset: low))
        }
        return regions
    }

    /// Maps `size` bytes of zeroed anonymous memory (lazily populated, `MAP_NORESERVE`).
    ///
    /// - Parameter mergeable: Marks the memory `MADV_MERGEABLE` so KSM can share identical pages.
    public init(size: UInt64, mergeable: Bool = false) throws(HypervisorError) {
        guard size > 0, size % Self.pageSize == 0 else {
            throw HypervisorError(.invalidConfiguration, "memory size \(size) must be a positive multiple of 4096 bytes")
        }
        guard let mapping = mmap(nil, Int(size), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | CKVM_MAP_NORESERVE, -1, 0),
              mapping != MAP_FAILED
        else {
            throw .systemCall("mmap of \(size) bytes of guest memory")
        }
        if mergeable {
            _ = madvise(mapping, Int(size), CKVM_MADV_MERGEABLE)
        }
        self.size = size
        self.base = mapping
        self.regions = Self.layout(forSize: size)
        self.vmmWrites = DirtyPageBitmap(pageCount: Int(size / Self.pageSize))
    }

    deinit { munmap(base, Int(size)) }

    /// The host address of `count` bytes at guest-physical `address`, or `nil` unless the whole
    /// range lies inside one RAM region. Safe against overflow for any guest-supplied values.
    public func hostPointer(at address: UInt64, count: UInt64) -> UnsafeMutableRawPointer? {
        for region in regions where address >= region.guestAddress && address < region.guestEnd {
            let offset = address - region.guestAddress
            guard count <= region.size - offset else { return nil }
            return base + Int(region.hostOffset + offset)
        }
        return nil
    }

    /// True when `[address, address + count)` lies inside one RAM region.
    public func contains(_ address: UInt64, count: UInt64) -> Bool {
        hostPointer(at: address, count: count) != nil
    }

    private func pointer(_ address: UInt64, _ count: Int) throws(HypervisorError) -> UnsafeMutableRawPointer {
        guard let pointer = hostPointer(at: address, count: UInt64(count)) else {
            throw HypervisorError(.guestMemory,
                                  "guest range 0x\(String(address, radix: 16)) + \(count) is outside guest RAM (\(size) bytes)")
        }
        return pointer
    }

    /// Records that the VMM wrote `[address, address + count)` through a host pointer (device
    /// emulation), for migration's dirty tracking: KVM's dirty log only sees the guest's own
    /// writes. Call it after the write. ``write(_:at:)`` and ``store(_:at:)`` mark by themselves.
    public func markDirty(_ address: UInt64, count: UInt64) {
        guard vmmWrites.isTracking, count > 0 else { return }
        for region in regions where address >= region.guestAddress && address < region.guestEnd {
            let offset = region.hostOffset + (address - region.guestAddress)
            let end = region.hostOffset + min(region.size, address - region.guestAddress + count)
            let first = Int(offset / Self.pageSize)
            vmmWrites.mark(firstPage: first, count: Int((end + Self.pageSize - 1) / Self.pageSize) - first)
            return
        }
    }

    /// Copies bytes into guest memory.
    public func write(_ bytes: some Collection<UInt8>, at address: UInt64) throws(HypervisorError) {
        defer { markDirty(address, count: UInt64(bytes.count)) }
        let destination = try pointer(address, bytes.count)
        let copied: Void? = bytes.withContiguousStorageIfAvailable { source in
            guard let base = source.baseAddress else { return }
            destination.copyMemory(from: base, byteCount: source.count)
        }
        guard copied == nil else { return }
        var offset = 0
        for byte in bytes {
            destination.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    /// Copies bytes out of guest memory.
    public func read(at address: UInt64, count: Int) throws(HypervisorError) -> [UInt8] {
        let source = try pointer(address, count)
        return Array(UnsafeRawBufferPointer(start: source, count: count))
    }

    /// Loads a little-endian integer from guest memory.
    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) throws(HypervisorError) -> T {
        T(littleEndian: try pointer(address, MemoryLayout<T>.size).loadUnaligned(as: T.self))
    }

    /// Stores a little-endian integer into guest memory.
    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws(HypervisorError) {
        try pointer(address, MemoryLayout<T>.size).storeBytes(of: value.littleEndian, as: T.self)
        markDirty(address, count: UInt64(MemoryLayout<T>.size))
    }

    /// Bytes of guest RAM currently resident in host memory (pages the guest or VMM touched).
    public var residentBytes: UInt64 {
        let pages = ckvm_resident_pages(base, Int(size))
        return pages < 0 ? 0 : UInt64(pages) * Self.pageSize
    }
}
