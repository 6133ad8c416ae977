import Testing
@testable import VMFSCore

/// A volume with a few files: inline, multi-block, and one reaching a pointer block.
private func populatedVolume() throws -> (MemoryBlockDevice, VolumeHeader) {
    let device = try makeMemoryVolume(size: 2 << 30)
    let volume = try Volume.mount(device: device, options: hostOptions("populate"))
    let small = try volume.create("vm.vmx", access: .readWrite)
    try small.write(bytes: Array("memsize = 512\n".utf8), at: 0)
    try small.close()
    let disk = try volume.create("vm-flat.vmdk", access: .readWrite)
    try disk.write(bytes: pattern(3 << 20, seed: 5), at: 0)
    try disk.write(bytes: pattern(1 << 20, seed: 6), at: 1 << 30)   // past the direct pointers
    try disk.close()
    try volume.unmount()
    return (device, try Volume.readHeader(device))
}

private func check(_ device: MemoryBlockDevice, repair: Bool) -> CheckReport {
    var options = CheckOptions()
    options.repair = repair
    options.force = true
    return VolumeChecker(device: repair ? device : device.readOnlyView(), options: options).run()
}

@Suite("fsck on in-memory volumes")
struct CheckerTests {
    @Test func cleanVolumeChecksClean() throws {
        let (device, _) = try populatedVolume()
        let report = check(device, repair: false)
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(report.exitCode == 0)
        #expect(report.files == 2)
        #expect(report.usedBlocks == 4)
        #expect(report.usedPointerBlocks == 1)
    }

    /// Flips a byte of each metadata structure in turn: `-n` must see it (exit 4) and write
    /// nothing, `-y` must fix it (exit 1), and a second `-n` must find the volume clean.
    @Test(arguments: ["volume header", "backup header", "heartbeat slot", "lock record", "name table", "name table mirror",
                      "descriptor", "descriptor mirror", "pointer block", "block bitmap", "pointer bitmap", "journal header"])
    func corruptionIsDetectedAndRepaired(structure: String) throws {
        let (device, header) = try populatedVolume()
        let layout = header.layout
        let names = try NamespaceCache.readTable(device: device, layout: layout, volumeID: header.volumeID)
        let diskSlot = names.first { $0.name == "vm-flat.vmdk" }!.slot
        let descriptor = try FileDescriptorRecord.decode(try device.read(count: 4096, at: layout.descriptor(diskSlot)),
                                                         slot: diskSlot, volumeID: header.volumeID, address: layout.descriptor(diskSlot))
        let target: UInt64
        switch structure {
        case "volume header": target = 100
        case "backup header": target = layout.backupHeaderOffset + 20
        case "heartbeat slot": target = layout.heartbeatSlot(0) + 60
        case "lock record": target = layout.lockRecord(0) + 40
        case "name table": target = layout.nameTableSector(0) + 80
        case "name table mirror": target = layout.nameTableMirrorOffset + 80
        case "descriptor": target = layout.descriptor(diskSlot) + 300
        case "descriptor mirror": target = layout.mirror(of: layout.descriptor(diskSlot))! + 300
        case "pointer block": target = layout.pointerNode(descriptor.indirect[0]) + 70
        case "block bitmap": target = layout.blockBitmap(0) + 64
        case "pointer bitmap": target = layout.pointerBitmap(0) + 64
        default: target = layout.journal(0) + 44
        }
        var byte = try device.read(count: 1, at: target)
        byte[0] ^= 0x5A
        try device.write(bytes: byte, at: target)
        let before = device.ioCounters.writes
        let detected = check(device, repair: false)
        #expect(detected.exitCode == 4, "\(structure): \(detected.problems)")
        #expect(detected.problems.contains { $0.offset != nil })
        #expect(device.ioCounters.writes == before, "fsck -n must not write")
        let repaired = check(device, repair: true)
        #expect(repaired.exitCode == 1, "\(structure): \(repaired.problems)")
        let again = check(device, repair: false)
        #expect(again.exitCode == 0, "\(structure): \(again.problems)")
        // The data survives every repair (mirrors and the backup header cover the damage).
        let volume = try Volume.mount(device: device, options: hostOptions("verify"))
        defer { try? volume.unmount() }
        let disk = try volume.open("vm-flat.vmdk")
        #expect(try disk.read(count: 3 << 20, at: 0) == pattern(3 << 20, seed: 5))
        #expect(try disk.read(count: 1 << 20, at: 1 << 30) == pattern(1 << 20, seed: 6))
        #expect(try volume.open("vm.vmx").read(count: 100, at: 0) == Array("memsize = 512\n".utf8))
    }

    @Test func leakedAndDoublyUsedBlocksAreFound() throws {
        let (device, header) = try populatedVolume()
        let layout = header.layout
        // Mark a free block allocated in cluster 0's bitmap (a leak), resealing the sector.
        let address = layout.blockBitmap(0)
        var bitmap = try ClusterBitmap.decode(try device.read(count: 4096, at: address), pool: .blocks, index: 0, firstItem: 0,
                                              itemCount: Int(layout.blocksPerCluster), volumeID: header.volumeID, address: address)
        let leak = bitmap.firstFree()!
        bitmap.set(leak, allocated: true)
        bitmap.version += 1
        try device.write(bytes: bitmap.encoded(volumeID: header.volumeID, address: address), at: address)
        let report = check(device, repair: false)
        #expect(report.exitCode == 4)
        #expect(report.problems.contains { $0.message.contains("leaked") })
        #expect(check(device, repair: true).exitCode == 1)
        #expect(check(device, repair: false).exitCode == 0)
    }
}
