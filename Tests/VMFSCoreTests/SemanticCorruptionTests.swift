import Testing
@testable import VMFSCore

/// Corruption that checksums cannot catch: fields of valid structures set to random (often
/// absurd) values and resealed with a correct CRC, in both copies of mirrored sectors. Nothing
/// may crash; every operation either works or throws; `fsck -y` must leave a volume that
/// `fsck -n` finds clean.
@Suite("Checksum-valid but nonsensical metadata")
struct SemanticCorruptionTests {
    private struct Random: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return state &* 2685821657736338717
        }
    }

    private func absurd(_ random: inout Random) -> UInt32 {
        switch random.next() % 5 {
        case 0: 0
        case 1: UInt32.max
        case 2: UInt32(random.next() % 5000)
        case 3: 0x8000_0000 | UInt32(random.next() % 100)
        default: UInt32(truncatingIfNeeded: random.next())
        }
    }

    private func write(_ bytes: [UInt8], at address: UInt64, mirror: UInt64?, on device: MemoryBlockDevice) throws {
        try device.write(bytes: bytes, at: address)
        if let mirror { try device.write(bytes: bytes, at: mirror) }
    }

    @Test(arguments: Array(1...32))
    func nothingCrashesAndRepairAlwaysConverges(seed: Int) throws {
        var random = Random(state: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1)
        let device = try makeMemoryVolume(size: 2 << 30)
        do {
            let volume = try Volume.mount(device: device, options: hostOptions("writer"))
            for i in 0..<4 {
                let handle = try volume.create("f\(i)", access: .readWrite)
                try handle.write(bytes: pattern(Int(random.next() % (3 << 20)) + 1, seed: UInt64(i)), at: random.next() % (1 << 30))
                try handle.close()
            }
            try volume.unmount()
        }
        let header = try Volume.readHeader(device)
        let layout = header.layout
        let id = header.volumeID
        let names = try NamespaceCache.readTable(device: device, layout: layout, volumeID: id)
        let victim = names[Int(random.next() % UInt64(names.count))].slot
        let descriptorAddress = layout.descriptor(victim)
        var descriptor = try FileDescriptorRecord.decode(try device.read(count: 4096, at: descriptorAddress), slot: victim,
                                                         volumeID: id, address: descriptorAddress)
        switch random.next() % 6 {
        case 0:
            for _ in 0..<3 { descriptor.direct[Int(random.next() % 952)] = absurd(&random) }
            descriptor.version += 1
            try write(descriptor.encoded(volumeID: id, address: descriptorAddress), at: descriptorAddress,
                      mirror: layout.mirror(of: descriptorAddress), on: device)
        case 1:
            descriptor.indirect[Int(random.next() % 3)] = absurd(&random)
            descriptor.size = random.next() % 2 == 0 ? UInt64.max : random.next() % (1 << 50)
            descriptor.allocatedBlocks = random.next()
            descriptor.version += 1
            try write(descriptor.encoded(volumeID: id, address: descriptorAddress), at: descriptorAddress,
                      mirror: layout.mirror(of: descriptorAddress), on: device)
        case 2:
            if descriptor.indirect[0] != 0 {
                let address = layout.pointerNode(descriptor.indirect[0])
                var node = try PointerNode.decode(try device.read(count: 4096, at: address), number: descriptor.indirect[0],
                                                  volumeID: id, address: address)
                for _ in 0..<4 { node.entries[Int(random.next() % 1008)] = absurd(&random) }
                if random.next() % 2 == 0 { node.level = 2 }
                node.version += 1
                try write(node.encoded(volumeID: id, address: address), at: address, mirror: layout.mirror(of: address), on: device)
            } else {
                descriptor.isOrphan = true
                descriptor.version += 1
                try write(descriptor.encoded(volumeID: id, address: descriptorAddress), at: descriptorAddress,
                          mirror: layout.mirror(of: descriptorAddress), on: device)
            }
        case 3:
            let lockIndex = Int(random.next() % 300)
            var record = LockRecord(index: lockIndex, kind: LockManager.kind(ofLock: lockIndex, layout: layout))
            record.mode = .exclusive
            record.holders = [LockRecord.Holder(host: HostUUID.random(), slot: Int(random.next() % 65_535), generation: random.next(),
                                                since: 0, pid: 1)]
            record.version = 5
            try device.write(bytes: record.encoded(volumeID: id, address: layout.lockRecord(lockIndex)), at: layout.lockRecord(lockIndex))
        case 4:
            let address = layout.blockBitmap(0)
            var bitmap = try ClusterBitmap.decode(try device.read(count: 4096, at: address), pool: .blocks, index: 0, firstItem: 0,
                                                  itemCount: Int(layout.blocksPerCluster), volumeID: id, address: address)
            for _ in 0..<20 { bitmap.set(Int(random.next() % UInt64(layout.blocksPerCluster)), allocated: random.next() % 2 == 0) }
            bitmap.set(0, allocated: true)
            bitmap.version += 1
            try device.write(bytes: bitmap.encoded(volumeID: id, address: address), at: address)
        default:
            var slot = HeartbeatSlot(index: Int(random.next() % 64))
            slot.state = .live
            slot.generation = random.next() % 10
            slot.owner = HostUUID.random()
            slot.replayerSlot = Int(random.next() % 65_535)
            slot.deadIntervalMs = 10
            slot.renewIntervalMs = 1
            slot.version = 3
            let address = layout.heartbeatSlot(slot.index)
            try device.write(bytes: slot.encoded(volumeID: id, address: address), at: address)
        }
        // Use the damaged volume: every call may fail, none may crash.
        if let volume = try? Volume.mount(device: device, options: hostOptions("user")) {
            for name in (try? volume.list().map(\.name)) ?? [] {
                if let handle = try? volume.open(name, access: .readWrite) {
                    _ = try? handle.read(count: 1 << 20, at: 0)
                    _ = try? handle.read(count: 4096, at: (random.next() % (2 << 30)))
                    try? handle.write(bytes: [1, 2, 3], at: random.next() % (1 << 32))
                    try? handle.truncate(to: random.next() % (8 << 20))
                    try? handle.close()
                }
            }
            _ = try? volume.statistics()
            try? volume.unmount()
        }
        var repair = CheckOptions()
        repair.repair = true
        repair.force = true
        let repaired = VolumeChecker(device: device, options: repair).run()
        #expect(repaired.exitCode <= 1, "seed \(seed): \(repaired.problems)")
        var check = CheckOptions()
        check.force = true
        let again = VolumeChecker(device: device.readOnlyView(), options: check).run()
        #expect(again.exitCode == 0, "seed \(seed): after repair: \(again.problems)")
        let volume = try Volume.mount(device: device, options: hostOptions("after"))
        for name in try volume.list().map(\.name) {
            let handle = try volume.open(name, access: .readWrite)
            _ = try handle.read(count: 1 << 20, at: 0)
            try handle.close()
        }
        try volume.unmount()
    }
}
