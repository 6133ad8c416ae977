/// One resource cluster's allocation bitmap: a 4 KiB sector, one bit per item (set = allocated).
///
/// Two pools use it: data blocks and pointer blocks. Each cluster has its own lock record, so
/// hosts allocate from different clusters in parallel.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `BMSP`) |
/// | 32 | 4 | cluster index |
/// | 36 | 4 | items in this cluster |
/// | 40 | 4 | free items |
/// | 44 | 4 | pool: 0 data blocks, 1 pointer blocks |
/// | 48 | 8 | first item number |
/// | 64 | ≤ 2048 | bitmap, bit i of byte j = item 8j + i |
///
/// A pristine sector is a cluster with every item free, except item 0 of cluster 0 (block 0 and
/// pointer block 0 are reserved: 0 means "none" in a map).
public struct ClusterBitmap: Sendable, Equatable {
    /// Which items a cluster allocates.
    public enum Pool: UInt32, Sendable { case blocks = 0, pointers = 1 }

    public var pool: Pool
    public var index: Int
    public var firstItem: UInt64
    public var itemCount: Int
    public var bits: [UInt8]
    public var version: UInt64 = 0

    /// An empty cluster (what a pristine sector stands for).
    public init(pool: Pool, index: Int, firstItem: UInt64, itemCount: Int) {
        self.pool = pool
        self.index = index
        self.firstItem = firstItem
        self.itemCount = itemCount
        self.bits = Array(repeating: 0, count: (itemCount + 7) / 8)
        if firstItem == 0 && itemCount > 0 { bits[0] |= 1 }
    }

    public func isAllocated(_ item: Int) -> Bool { bits[item >> 3] & (1 << UInt8(item & 7)) != 0 }

    public mutating func set(_ item: Int, allocated: Bool) {
        if allocated { bits[item >> 3] |= 1 << UInt8(item & 7) } else { bits[item >> 3] &= ~(1 << UInt8(item & 7)) }
    }

    /// Items not allocated.
    public var freeCount: Int {
        var used = 0
        for byte in bits { used += byte.nonzeroBitCount }
        return itemCount - used
    }

    /// The first free item at or after `start`, not wrapping around.
    func nextFree(from start: Int) -> Int? {
        var i = max(start, 0)
        while i < itemCount {
            if i & 7 == 0 && bits[i >> 3] == 0xFF {
                i += 8
                continue
            }
            if !isAllocated(i) { return i }
            i += 1
        }
        return nil
    }

    /// The first free item at or after `start`, wrapping around.
    func firstFree(from start: Int = 0) -> Int? {
        guard itemCount > 0 else { return nil }
        var i = start % itemCount
        for _ in 0..<itemCount {
            if bits[i >> 3] == 0xFF { i = min(((i >> 3) + 1) << 3, itemCount) % itemCount; continue }
            if !isAllocated(i) { return i }
            i = (i + 1) % itemCount
        }
        return nil
    }

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.bitmap, volumeID: volumeID, address: address, version: version) { w in
            w.put(UInt32(index), at: 32)
            w.put(UInt32(itemCount), at: 36)
            w.put(UInt32(freeCount), at: 40)
            w.put(pool.rawValue, at: 44)
            w.put(firstItem, at: 48)
            w.put(bytes: bits, at: FormatConstants.bitmapOffset)
        }
    }

    static func decode(_ bytes: [UInt8], pool: Pool, index: Int, firstItem: UInt64, itemCount: Int,
                       volumeID: UInt64, address: UInt64) throws(VMFSError) -> ClusterBitmap {
        let structure = "\(pool == .blocks ? "block" : "pointer-block") cluster \(index) bitmap"
        var bitmap = ClusterBitmap(pool: pool, index: index, firstItem: firstItem, itemCount: itemCount)
        switch try SectorCodec.open(bytes, magic: .bitmap, volumeID: volumeID, address: address, structure: structure) {
        case .pristine:
            return bitmap
        case .valid(let r, let version):
            guard Int(r.u32(32)) == index, Int(r.u32(36)) == itemCount, r.u32(44) == pool.rawValue, r.u64(48) == firstItem else {
                throw VMFSError(.corrupt, "\(structure) header fields do not match its position",
                                location: .init(structure: structure, offset: address + 32))
            }
            bitmap.version = version
            bitmap.bits = r.slice(FormatConstants.bitmapOffset, (itemCount + 7) / 8)
            // Bits past the item count must be clear, and the stored free count must agree.
            if itemCount % 8 != 0, bitmap.bits[bitmap.bits.count - 1] >> UInt8(itemCount % 8) != 0 {
                throw VMFSError(.corrupt, "\(structure) has bits set past its last item", location: .init(structure: structure, offset: address))
            }
            guard Int(r.u32(40)) == bitmap.freeCount else {
                throw VMFSError(.corrupt, "\(structure) free count \(r.u32(40)) does not match its bits (\(bitmap.freeCount))",
                                location: .init(structure: structure, offset: address + 40))
            }
            if firstItem == 0 && !bitmap.isAllocated(0) {
                throw VMFSError(.corrupt, "\(structure) does not reserve item 0", location: .init(structure: structure, offset: address + 64))
            }
            return bitmap
        }
    }
}
