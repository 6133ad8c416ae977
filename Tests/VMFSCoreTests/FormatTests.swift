import Testing
@testable import VMFSCore

@Suite("On-disk structures: round trips, checksums, arithmetic")
struct FormatTests {
    let volumeID: UInt64 = 0x1122_3344_5566_7788
    let address: UInt64 = 0x40_0000

    private func expectCorruptionDetected(_ bytes: [UInt8], at offset: Int, _ decode: ([UInt8]) throws -> Void) {
        var damaged = bytes
        damaged[offset] ^= 0x01
        #expect(throws: VMFSError.self) { try decode(damaged) }
        do { try decode(damaged) } catch let error as VMFSError {
            #expect(error.code == .corrupt)
            #expect(error.location?.offset != nil, "the error must name the byte offset")
        } catch {
            Issue.record("unexpected error type \(error)")
        }
    }

    @Test func volumeHeaderRoundTripsAndRejectsDamage() throws {
        let layout = try VolumeLayout.compute(deviceSize: 10 << 30, blockSize: 2 << 20, maxHosts: 128, journalSize: 4 << 20)
        let header = VolumeHeader(uuid: HostUUID.random(), label: "datastore-é", creationTime: 1_700_000_000_000_000_000, layout: layout,
                                  heartbeatIntervalMs: 3000, deadIntervalMs: 16000, ioTimeoutMs: 8000)
        let bytes = header.encoded()
        #expect(bytes.count == 4096)
        #expect(try VolumeHeader.decode(bytes) == header)
        for offset in [0, 9, 20, 100, 190, 250, 3000] {
            var damaged = bytes
            damaged[offset] ^= 0x10
            #expect(throws: VMFSError.self) { try VolumeHeader.decode(damaged) }
        }
        var future = ByteWriter(bytes: bytes)
        future.put(UInt16(2), at: 8)
        future.put(UInt16(0), at: 10)
        future.put(CRC32C.checksum(future.bytes, excludingFieldAt: 12), at: 12)
        do {
            _ = try VolumeHeader.decode(future.bytes, device: "lun0")
            Issue.record("a future major version must be refused")
        } catch {
            #expect(error.code == .futureVersion)
            #expect(error.location?.offset == 8)
            #expect(error.description.contains("2.0"))
        }
        do {
            _ = try VolumeHeader.decode([UInt8](repeating: 0x41, count: 4096))
            Issue.record("random bytes are not a volume")
        } catch {
            #expect(error.code == .notVMFS)
        }
    }

    /// Format 1.2: bytes 376–377 name the atomic update and fencing methods under incompatible
    /// feature bit 0; volumes without them (1.0, 1.1, or 1.2 with OFD locks) read as OFD locks.
    @Test func coordinationMethodsAreVersionedInTheHeader() throws {
        let layout = try VolumeLayout.compute(deviceSize: 4 << 30, blockSize: 1 << 20, maxHosts: 64, journalSize: 1 << 20, diskPaxos: true)
        var header = VolumeHeader(uuid: HostUUID.random(), label: "lun", creationTime: 1, layout: layout,
                                  heartbeatIntervalMs: 200, deadIntervalMs: 4000, ioTimeoutMs: 800)
        header.atomicUpdate = .diskPaxos
        header.fencing = .persistentReservation
        let bytes = header.encoded()
        #expect(bytes[376] == 3 && bytes[377] == 1)
        #expect(bytes[360] == 1, "incompatible feature bit 0 marks a volume OFD-lock software must not mount")
        #expect(ByteReader(bytes).u64(352) == layout.paxosOffset && layout.paxosOffset != 0)
        #expect(try VolumeHeader.decode(bytes) == header)

        func resealed(_ edit: (inout ByteWriter) -> Void) -> [UInt8] {
            var writer = ByteWriter(bytes: bytes)
            edit(&writer)
            writer.put(UInt32(0), at: 12)
            writer.put(CRC32C.checksum(writer.bytes, excludingFieldAt: 12), at: 12)
            return writer.bytes
        }
        for (offset, value) in [(376, UInt8(9)), (377, UInt8(7))] {
            do {
                _ = try VolumeHeader.decode(resealed { $0.put(value, at: offset) }, device: "lun0")
                Issue.record("an unknown method at byte \(offset) must be refused")
            } catch {
                #expect(error.code == .futureVersion)
                #expect(error.location?.offset == UInt64(offset), "\(error)")
            }
        }
        let unknownFeature = resealed { $0.put(UInt64(3), at: 360) }
        #expect(throws: VMFSError.self) { try VolumeHeader.decode(unknownFeature) }
        let bitWithoutMethods = resealed {
            $0.put(UInt8(0), at: 376)
            $0.put(UInt8(0), at: 377)
        }
        #expect(throws: VMFSError.self) { try VolumeHeader.decode(bitWithoutMethods) }

        // A 1.1 volume: no feature bits, zero bytes 376–377, minor 1: OFD locks, no fencing.
        let plainLayout = try VolumeLayout.compute(deviceSize: 4 << 30, blockSize: 1 << 20, maxHosts: 64, journalSize: 1 << 20)
        var old = VolumeHeader(uuid: HostUUID.random(), label: "old", creationTime: 1, layout: plainLayout,
                               heartbeatIntervalMs: 3000, deadIntervalMs: 16000, ioTimeoutMs: 8000).encoded()
        var writer = ByteWriter(bytes: old)
        writer.put(UInt16(1), at: 10)
        writer.put(UInt32(0), at: 12)
        writer.put(CRC32C.checksum(writer.bytes, excludingFieldAt: 12), at: 12)
        old = writer.bytes
        #expect(old[360] == 0 && old[376] == 0 && old[377] == 0)
        let decoded = try VolumeHeader.decode(old)
        #expect(decoded.formatMinor == 1 && decoded.atomicUpdate == .rangeLocks && decoded.fencing == FencingMethod.none)
    }

    @Test func heartbeatSlotRoundTrips() throws {
        var slot = HeartbeatSlot(index: 7)
        slot.state = .replaying
        slot.generation = 42
        slot.stamp = 9001
        slot.owner = HostUUID.random()
        slot.ownerName = "esx-07"
        slot.ownerPID = 1234
        slot.renewIntervalMs = 3000
        slot.deadIntervalMs = 16000
        slot.ioTimeoutMs = 8000
        slot.replayer = HostUUID.random()
        slot.replayerSlot = 3
        slot.replayerGeneration = 5
        slot.recoveringGeneration = 41
        slot.version = 77
        let bytes = slot.encoded(volumeID: volumeID, address: address)
        #expect(try HeartbeatSlot.decode(bytes, index: 7, volumeID: volumeID, address: address) == slot)
        #expect(try HeartbeatSlot.decode([UInt8](repeating: 0, count: 4096), index: 7, volumeID: volumeID, address: address).state == .free)
        expectCorruptionDetected(bytes, at: 50) { try _ = HeartbeatSlot.decode($0, index: 7, volumeID: volumeID, address: address) }
        #expect(throws: VMFSError.self) { try HeartbeatSlot.decode(bytes, index: 7, volumeID: volumeID ^ 1, address: address) }
        #expect(throws: VMFSError.self) { try HeartbeatSlot.decode(bytes, index: 7, volumeID: volumeID, address: address + 4096) }
    }

    @Test func lockRecordRoundTripsWithThirtyTwoHolders() throws {
        var record = LockRecord(index: 600, kind: .blockCluster)
        record.mode = .readOnly
        record.holders = (0..<32).map { LockRecord.Holder(host: HostUUID.random(), slot: $0, generation: UInt64($0) * 3, since: Int64($0), pid: UInt32($0)) }
        record.releaseRequested = true
        record.version = 12
        let bytes = record.encoded(volumeID: volumeID, address: address)
        #expect(try LockRecord.decode(bytes, index: 600, kind: .blockCluster, volumeID: volumeID, address: address) == record)
        expectCorruptionDetected(bytes, at: 64 + 48 * 31) { try _ = LockRecord.decode($0, index: 600, kind: .blockCluster, volumeID: volumeID, address: address) }
        var exclusive = LockRecord(index: 1, kind: .fileDescriptor)
        exclusive.mode = .exclusive
        exclusive.holders = Array(record.holders.prefix(2))
        #expect(throws: VMFSError.self) {
            try LockRecord.decode(exclusive.encoded(volumeID: volumeID, address: address), index: 1, kind: .fileDescriptor, volumeID: volumeID, address: address)
        }
    }

    @Test func nameTableAndDescriptorRoundTrip() throws {
        var sector = NameTableSector(index: 3)
        sector.entries[0] = NameEntry(name: "vm1-flat.vmdk", slot: 9, generation: 4, created: 55)
        sector.entries[15] = NameEntry(name: String(repeating: "ä", count: 63), slot: 254, generation: 1, created: 66)
        let names = sector.encoded(volumeID: volumeID, address: address)
        #expect(try NameTableSector.decode(names, index: 3, volumeID: volumeID, address: address).entries == sector.entries)
        expectCorruptionDetected(names, at: 64 + 20) { try _ = NameTableSector.decode($0, index: 3, volumeID: volumeID, address: address) }

        var descriptor = FileDescriptorRecord(slot: 9)
        descriptor.inUse = true
        descriptor.generation = 4
        descriptor.mode = 0o100600
        descriptor.uid = 1000
        descriptor.gid = 100
        descriptor.size = 64 << 40
        descriptor.allocatedBlocks = 3
        descriptor.pointerBlocks = 3
        descriptor.mappedEnd = 67_108_864
        descriptor.indirect = [10, 0, 12]
        descriptor.direct[0] = 5
        descriptor.direct[951] = 6 | FormatConstants.unwrittenFlag
        descriptor.nameHint = "vm1-flat.vmdk"
        let bytes = descriptor.encoded(volumeID: volumeID, address: address)
        #expect(try FileDescriptorRecord.decode(bytes, slot: 9, volumeID: volumeID, address: address) == descriptor)
        expectCorruptionDetected(bytes, at: 300) { try _ = FileDescriptorRecord.decode($0, slot: 9, volumeID: volumeID, address: address) }

        var inline = FileDescriptorRecord(slot: 2)
        inline.inUse = true
        inline.isInline = true
        inline.inlineData = Array("displayName = \"vm\"\n".utf8)
        inline.size = UInt64(inline.inlineData.count)
        #expect(try FileDescriptorRecord.decode(inline.encoded(volumeID: volumeID, address: address), slot: 2, volumeID: volumeID, address: address) == inline)
    }

    @Test func rootDirectoryRecordLivesInNameTableSectorZero() throws {
        var sector = NameTableSector(index: 0)
        sector.entries[15] = NameEntry(name: "last", slot: 9, generation: 2, created: 5)
        #expect(try NameTableSector.decode(sector.encoded(volumeID: volumeID, address: address), index: 0, volumeID: volumeID,
                                           address: address).directory == nil, "no record: the defaults apply")
        sector.directory = DirectoryAttributes(mode: 0o1777, uid: 1000, gid: 100, accessTime: 1, modificationTime: -2, changeTime: 3)
        let bytes = sector.encoded(volumeID: volumeID, address: address)
        // After the 16 entries (64 + 16 × 240), version 1 first.
        #expect(bytes[3904] == 1 && bytes[3905] == 0 && bytes[3908] == 0xFF && bytes[3909] == 0x03)
        let decoded = try NameTableSector.decode(bytes, index: 0, volumeID: volumeID, address: address)
        #expect(decoded.directory == sector.directory && decoded.entries == sector.entries)
        expectCorruptionDetected(bytes, at: 3912) { try _ = NameTableSector.decode($0, index: 0, volumeID: volumeID, address: address) }
        // Mode bits beyond 0o7777 from a hostile or newer writer are dropped.
        var wide = DirectoryAttributes.defaults(created: 7)
        wide.mode = 0o177777
        #expect(DirectoryAttributes.defaults(created: 7) == DirectoryAttributes(mode: 0o755, uid: 0, gid: 0, accessTime: 7,
                                                                                  modificationTime: 7, changeTime: 7))
        sector.directory = wide
        let masked = try NameTableSector.decode(sector.encoded(volumeID: volumeID, address: address), index: 0, volumeID: volumeID,
                                                address: address)
        #expect(masked.directory?.mode == 0o7777)
    }

    @Test func pointerBlockBitmapAndJournalRoundTrip() throws {
        var node = PointerNode(number: 77, level: 2, ownerSlot: 9, ownerGeneration: 4)
        node.entries[0] = 1
        node.entries[1007] = 0x7FFF_FFFF
        node.version = 3
        let bytes = node.encoded(volumeID: volumeID, address: address)
        #expect(try PointerNode.decode(bytes, number: 77, volumeID: volumeID, address: address) == node)
        expectCorruptionDetected(bytes, at: 64 + 4 * 1007) { try _ = PointerNode.decode($0, number: 77, volumeID: volumeID, address: address) }
        #expect(throws: VMFSError.self) { try PointerNode.decode([UInt8](repeating: 0, count: 4096), number: 77, volumeID: volumeID, address: address) }

        var bitmap = ClusterBitmap(pool: .blocks, index: 0, firstItem: 0, itemCount: 1000)
        #expect(bitmap.isAllocated(0), "block 0 is reserved")
        #expect(bitmap.freeCount == 999)
        bitmap.set(999, allocated: true)
        bitmap.set(500, allocated: true)
        #expect(bitmap.firstFree(from: 999) == 1)
        #expect(bitmap.firstFree(from: 500) == 501)
        let encoded = bitmap.encoded(volumeID: volumeID, address: address)
        let decoded = try ClusterBitmap.decode(encoded, pool: .blocks, index: 0, firstItem: 0, itemCount: 1000, volumeID: volumeID, address: address)
        #expect(decoded.bits == bitmap.bits && decoded.freeCount == 997)
        expectCorruptionDetected(encoded, at: 64 + 62) {
            try _ = ClusterBitmap.decode($0, pool: .blocks, index: 0, firstItem: 0, itemCount: 1000, volumeID: volumeID, address: address)
        }

        let header = JournalHeader(slot: 4, startSequence: 100, resetBy: HostUUID.random(), version: 2)
        #expect(try JournalHeader.decode(header.encoded(volumeID: volumeID, address: address), slot: 4, volumeID: volumeID, address: address) == header)
    }

    @Test func blockMapArithmeticAtItsBoundaries() {
        let direct = UInt64(FormatConstants.directPointers)
        let fan = UInt64(FormatConstants.pointerEntries)
        #expect(BlockMapGeometry.path(forBlock: 0) == .direct(0))
        #expect(BlockMapGeometry.path(forBlock: direct - 1) == .direct(951))
        #expect(BlockMapGeometry.path(forBlock: direct) == .indirect(depth: 1, indices: [0]))
        #expect(BlockMapGeometry.path(forBlock: direct + fan - 1) == .indirect(depth: 1, indices: [1007]))
        #expect(BlockMapGeometry.path(forBlock: direct + fan) == .indirect(depth: 2, indices: [0, 0]))
        #expect(BlockMapGeometry.path(forBlock: direct + fan + fan * fan - 1) == .indirect(depth: 2, indices: [1007, 1007]))
        #expect(BlockMapGeometry.path(forBlock: direct + fan + fan * fan) == .indirect(depth: 3, indices: [0, 0, 0]))
        // The last 1 MiB block of a 64 TiB file.
        let last: UInt64 = (64 << 20) - 1
        let rest = last - direct - fan - fan * fan
        #expect(BlockMapGeometry.path(forBlock: last) == .indirect(depth: 3, indices: [Int(rest / (fan * fan)), Int(rest / fan % fan), Int(rest % fan)]))
        #expect(BlockMapGeometry.path(forBlock: BlockMapGeometry.reachInBlocks) == nil)
        #expect(BlockMapGeometry.reachInBlocks * (1 << 20) > 64 << 40)
    }

    @Test func layoutsFitAndScale() throws {
        let cases: [(UInt64, UInt32, UInt32)] = [
            (256 << 20, 1 << 20, 64), (64 << 40, 1 << 20, 64), (100 << 30, 8 << 20, 2048), (1 << 40, 4 << 20, 128),
        ]
        for (size, block, hosts) in cases {
            let layout = try VolumeLayout.compute(deviceSize: size, blockSize: block, maxHosts: hosts,
                                                  journalSize: VolumeLayout.defaultJournalSize(deviceSize: size))
            #expect(layout.heartbeatOffset >= 1 << 20)
            #expect(layout.dataOffset % UInt64(block) == 0)
            #expect(layout.backupHeaderOffset + 4096 <= size)
            #expect(layout.dataOffset + layout.totalBlocks * UInt64(block) <= layout.backupHeaderOffset)
            #expect(UInt64(layout.blockClusterCount) * UInt64(layout.blocksPerCluster) >= layout.totalBlocks)
            #expect(layout.maxFileSize >= 64 << 40)
        }
        #expect(throws: VMFSError.self) { try VolumeLayout.compute(deviceSize: 8 << 20, blockSize: 1 << 20, maxHosts: 64, journalSize: 1 << 20) }
        #expect(throws: VMFSError.self) { try VolumeLayout.compute(deviceSize: 1 << 30, blockSize: 3 << 20, maxHosts: 64, journalSize: 1 << 20) }
        #expect(throws: VMFSError.self) { try VolumeLayout.compute(deviceSize: 1 << 30, blockSize: 1 << 20, maxHosts: 32, journalSize: 1 << 20) }
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let split = big.withUnsafeBytes { raw in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[50_000...]), seed: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<50_000])))
        }
        #expect(split == CRC32C.checksum(big))
    }
}

@Suite("Allocation bitmap search")
struct BitmapSearchTests {
    @Test func nextFreeNeverWrapsAndSkipsFullBytes() {
        var bitmap = ClusterBitmap(pool: .blocks, index: 1, firstItem: 64, itemCount: 64)
        for i in 0..<64 where i != 3 && i != 40 { bitmap.set(i, allocated: true) }
        #expect(bitmap.nextFree(from: 0) == 3)
        #expect(bitmap.nextFree(from: 4) == 40)
        #expect(bitmap.nextFree(from: 41) == nil, "the search must not wrap to item 3")
        #expect(bitmap.firstFree(from: 41) == 3, "firstFree wraps")
    }
}
