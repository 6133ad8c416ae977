/// Where every region of a volume lies, derived from the format parameters.
///
/// All offsets are bytes from the start of the device. Regions start on 1 MiB boundaries; the
/// data region starts on a block boundary. See `docs/FORMAT.md` for the picture.
public struct VolumeLayout: Sendable, Equatable {
    public var deviceSize: UInt64
    public var blockSize: UInt32
    public var maxHosts: UInt32
    public var journalSize: UInt64

    public var totalBlocks: UInt64
    public var blocksPerCluster: UInt32
    public var blockClusterCount: UInt32
    public var pointerNodeCount: UInt32
    public var nodesPerCluster: UInt32
    public var pointerClusterCount: UInt32

    public var heartbeatOffset: UInt64
    public var lockOffset: UInt64
    public var lockCount: UInt32
    public var nameTableOffset: UInt64
    public var nameTableMirrorOffset: UInt64
    public var descriptorOffset: UInt64
    public var descriptorMirrorOffset: UInt64
    public var blockBitmapOffset: UInt64
    public var pointerBitmapOffset: UInt64
    public var pointerNodeOffset: UInt64
    public var pointerMirrorOffset: UInt64
    public var journalOffset: UInt64
    public var dataOffset: UInt64
    public var backupHeaderOffset: UInt64
    /// The Disk Paxos region (one lease area per lock record), or 0 when the volume has none.
    public var paxosOffset: UInt64 = 0

    static let mebibyte: UInt64 = 1 << 20
    static var sector: UInt64 { UInt64(FormatConstants.sectorSize) }

    private static func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        (value + alignment - 1) / alignment * alignment
    }

    private static func nextPowerOfTwo(_ value: UInt64) -> UInt64 {
        var p: UInt64 = 1
        while p < value { p <<= 1 }
        return p
    }

    /// The journal size `mkfs.vmfs` picks when none is given: 1/1024 of the device, 1–16 MiB.
    public static func defaultJournalSize(deviceSize: UInt64) -> UInt64 {
        min(max(deviceSize / 1024 / mebibyte * mebibyte, mebibyte), 16 * mebibyte)
    }

    /// Computes the layout for a new volume.
    ///
    /// - Throws: ``VMFSError/Code/invalidArgument`` when the parameters do not fit the device.
    ///
    /// - Parameter diskPaxos: Reserve the Disk Paxos region after the journals: for every lock
    ///   record a lease area of 1 + `maxHosts` sectors (a leader and one ballot block per host).
    public static func compute(deviceSize: UInt64, blockSize: UInt32, maxHosts: UInt32,
                               journalSize: UInt64, diskPaxos: Bool = false) throws(VMFSError) -> VolumeLayout {
        guard FormatConstants.allowedBlockSizes.contains(blockSize) else {
            throw VMFSError(.invalidArgument, "block size \(blockSize) is not one of 1M, 2M, 4M, 8M")
        }
        guard (UInt32(FormatConstants.minimumHosts)...UInt32(FormatConstants.maximumHosts)).contains(maxHosts) else {
            throw VMFSError(.invalidArgument,
                            "max hosts \(maxHosts) is outside \(FormatConstants.minimumHosts)...\(FormatConstants.maximumHosts)")
        }
        guard journalSize >= mebibyte, journalSize % mebibyte == 0, journalSize <= 1024 * mebibyte else {
            throw VMFSError(.invalidArgument, "journal size must be a whole number of MiB between 1 MiB and 1 GiB")
        }
        let block = UInt64(blockSize)
        let deviceEnd = deviceSize / sector * sector
        guard deviceEnd > 16 * mebibyte else {
            throw VMFSError(.invalidArgument, "device of \(deviceSize) bytes is too small for a VMFS volume")
        }
        // Upper bound of data blocks, used to size the allocation structures.
        let maxBlocks = min(deviceEnd / block, UInt64(Int32.max))
        let blocksPerCluster = min(max(nextPowerOfTwo((maxBlocks + UInt64(maxHosts) * 4 - 1) / (UInt64(maxHosts) * 4)), 64),
                                   UInt64(FormatConstants.maxItemsPerCluster))
        let blockClusters = max((maxBlocks + blocksPerCluster - 1) / blocksPerCluster, 1)
        let pointerNodes = min(maxBlocks / 256 + 1024, UInt64(Int32.max))
        let nodesPerCluster = min(max(nextPowerOfTwo((pointerNodes + UInt64(maxHosts) * 2 - 1) / (UInt64(maxHosts) * 2)), 64),
                                  UInt64(FormatConstants.maxItemsPerCluster))
        let pointerClusters = max((pointerNodes + nodesPerCluster - 1) / nodesPerCluster, 1)
        let lockCount = UInt64(FormatConstants.firstClusterLock) + blockClusters + pointerClusters

        var cursor = mebibyte
        func region(_ bytes: UInt64) -> UInt64 {
            let start = cursor
            cursor = alignUp(cursor + bytes, mebibyte)
            return start
        }
        let heartbeat = region(UInt64(maxHosts) * sector)
        let locks = region(lockCount * sector)
        let names = region(UInt64(FormatConstants.nameTableSectors) * sector)
        let namesMirror = region(UInt64(FormatConstants.nameTableSectors) * sector)
        let descriptors = region(UInt64(FormatConstants.maxFiles) * sector)
        let descriptorsMirror = region(UInt64(FormatConstants.maxFiles) * sector)
        let blockBitmaps = region(blockClusters * sector)
        let pointerBitmaps = region(pointerClusters * sector)
        let pointerRegion = region(pointerNodes * sector)
        let pointerMirror = region(pointerNodes * sector)
        let journals = region(UInt64(maxHosts) * journalSize)
        let paxos = diskPaxos ? region(lockCount * (1 + UInt64(maxHosts)) * sector) : 0
        let data = alignUp(cursor, block)
        let backup = deviceEnd - sector
        guard backup > data, (backup - data) / block >= 16 else {
            throw VMFSError(.invalidArgument,
                            "device of \(deviceSize) bytes is too small: metadata needs \(data) bytes plus at least 16 blocks of \(block) bytes "
                            + "(try a smaller --max-hosts or --journal-size, or a larger device)")
        }
        let totalBlocks = min((backup - data) / block, maxBlocks)
        return VolumeLayout(
            deviceSize: deviceSize, blockSize: blockSize, maxHosts: maxHosts, journalSize: journalSize,
            totalBlocks: totalBlocks, blocksPerCluster: UInt32(blocksPerCluster),
            blockClusterCount: UInt32(blockClusters), pointerNodeCount: UInt32(pointerNodes),
            nodesPerCluster: UInt32(nodesPerCluster), pointerClusterCount: UInt32(pointerClusters),
            heartbeatOffset: heartbeat, lockOffset: locks, lockCount: UInt32(lockCount),
            nameTableOffset: names, nameTableMirrorOffset: namesMirror,
            descriptorOffset: descriptors, descriptorMirrorOffset: descriptorsMirror,
            blockBitmapOffset: blockBitmaps, pointerBitmapOffset: pointerBitmaps,
            pointerNodeOffset: pointerRegion, pointerMirrorOffset: pointerMirror,
            journalOffset: journals, dataOffset: data, backupHeaderOffset: backup, paxosOffset: paxos)
    }

    // MARK: Addresses of structures

    func heartbeatSlot(_ slot: Int) -> UInt64 { heartbeatOffset + UInt64(slot) * Self.sector }
    func lockRecord(_ index: Int) -> UInt64 { lockOffset + UInt64(index) * Self.sector }
    func nameTableSector(_ index: Int) -> UInt64 { nameTableOffset + UInt64(index) * Self.sector }
    func descriptor(_ slot: Int) -> UInt64 { descriptorOffset + UInt64(slot) * Self.sector }
    func blockBitmap(_ cluster: Int) -> UInt64 { blockBitmapOffset + UInt64(cluster) * Self.sector }
    func pointerBitmap(_ cluster: Int) -> UInt64 { pointerBitmapOffset + UInt64(cluster) * Self.sector }
    func pointerNode(_ node: UInt32) -> UInt64 { pointerNodeOffset + UInt64(node) * Self.sector }
    func journal(_ slot: Int) -> UInt64 { journalOffset + UInt64(slot) * journalSize }
    /// The Disk Paxos lease area of lock record `index`: its leader sector, then one ballot
    /// sector per heartbeat slot.
    func paxosArea(lock index: Int) -> UInt64 { paxosOffset + UInt64(index) * (1 + UInt64(maxHosts)) * Self.sector }
    func block(_ number: UInt64) -> UInt64 { dataOffset + number * UInt64(blockSize) }

    func blockClusterLock(_ cluster: Int) -> Int { FormatConstants.firstClusterLock + cluster }
    func pointerClusterLock(_ cluster: Int) -> Int {
        FormatConstants.firstClusterLock + Int(blockClusterCount) + cluster
    }

    /// Byte offset of the mirror copy of file descriptor `slot`.
    func descriptorMirror(_ slot: Int) -> UInt64 { descriptorMirrorOffset + UInt64(slot) * Self.sector }

    /// The mirror copy's address for a sector in a mirrored region, or `nil` if the region has none.
    func mirror(of address: UInt64) -> UInt64? {
        let s = Self.sector
        if address >= nameTableOffset && address < nameTableOffset + UInt64(FormatConstants.nameTableSectors) * s {
            return address - nameTableOffset + nameTableMirrorOffset
        }
        if address >= descriptorOffset && address < descriptorOffset + UInt64(FormatConstants.maxFiles) * s {
            return address - descriptorOffset + descriptorMirrorOffset
        }
        if address >= pointerNodeOffset && address < pointerNodeOffset + UInt64(pointerNodeCount) * s {
            return address - pointerNodeOffset + pointerMirrorOffset
        }
        return nil
    }

    /// True when `address` is the start of a journaled metadata sector (name table, descriptor,
    /// bitmap or pointer node) — what a journal record may legally name as its home.
    func isJournaledHome(_ address: UInt64) -> Bool {
        let s = Self.sector
        guard address % s == 0 else { return false }
        func inside(_ start: UInt64, _ count: UInt64) -> Bool { address >= start && address < start + count * s }
        return inside(nameTableOffset, UInt64(FormatConstants.nameTableSectors))
            || inside(descriptorOffset, UInt64(FormatConstants.maxFiles))
            || inside(blockBitmapOffset, UInt64(blockClusterCount))
            || inside(pointerBitmapOffset, UInt64(pointerClusterCount))
            || inside(pointerNodeOffset, UInt64(pointerNodeCount))
    }

    /// The sector type a journaled home address must hold.
    func expectedMagic(at address: UInt64) -> SectorMagic? {
        let s = Self.sector
        func inside(_ start: UInt64, _ count: UInt64) -> Bool { address >= start && address < start + count * s }
        if inside(nameTableOffset, UInt64(FormatConstants.nameTableSectors)) { return .nameTable }
        if inside(descriptorOffset, UInt64(FormatConstants.maxFiles)) { return .descriptor }
        if inside(blockBitmapOffset, UInt64(blockClusterCount)) { return .bitmap }
        if inside(pointerBitmapOffset, UInt64(pointerClusterCount)) { return .bitmap }
        if inside(pointerNodeOffset, UInt64(pointerNodeCount)) { return .pointer }
        return nil
    }

    /// The largest file size the block map reaches at this block size, capped at 256 TiB.
    public var maxFileSize: UInt64 {
        let reach = BlockMapGeometry.reachInBlocks * UInt64(blockSize)
        return min(reach, FormatConstants.maxFileSize)
    }

    /// Bytes of data the volume can hold.
    public var dataCapacity: UInt64 { (totalBlocks - 1) * UInt64(blockSize) }
}
