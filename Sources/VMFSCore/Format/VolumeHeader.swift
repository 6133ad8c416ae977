/// The volume header: sector 0 of the device, with a backup copy in the device's last sector.
///
/// Byte layout (little-endian), 4096 bytes:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `VMFS-SW\0` |
/// | 8 | 2 | format major version |
/// | 10 | 2 | format minor version |
/// | 12 | 4 | CRC32C of the sector with this field zero |
/// | 16 | 16 | volume UUID |
/// | 32 | 128 | label, UTF-8, NUL padded (at most 127 bytes) |
/// | 160 | 8 | creation time, ns since the epoch |
/// | 168 | 8 | device size at format time |
/// | 176 | 4 | metadata sector size (4096) |
/// | 180 | 4 | block size |
/// | 184 | 8 | data blocks |
/// | 192 | 4 | heartbeat slots (max hosts) |
/// | 196 | 4 | max files (255) |
/// | 200 | 4 | heartbeat interval, ms |
/// | 204 | 4 | dead interval, ms |
/// | 208 | 4 | I/O timeout, ms |
/// | 212 | 4 | blocks per resource cluster |
/// | 216 | 4 | block resource clusters |
/// | 220 | 4 | pointer nodes |
/// | 224 | 4 | pointer nodes per cluster |
/// | 228 | 4 | pointer resource clusters |
/// | 232 | 8 | journal size per host |
/// | 240 | 8 × 15 | region offsets: heartbeat, locks, lock count (as u64), name table, name mirror, descriptors, descriptor mirror, block bitmaps, pointer bitmaps, pointer nodes, pointer mirror, journals, data, backup header, reserved |
/// | 360 | 8 | incompatible feature flags (must be 0 for this version) |
/// | 368 | 8 | compatible feature flags |
/// | 376 | 1 | atomic update method (``AtomicUpdateMethod``; with incompatible feature bit 0) |
/// | 377 | 1 | fencing method (``FencingMethod``; with incompatible feature bit 0) |
public struct VolumeHeader: Sendable, Equatable {
    public var formatMajor: UInt16
    public var formatMinor: UInt16
    public var uuid: HostUUID
    public var label: String
    public var creationTime: Int64
    public var layout: VolumeLayout
    /// Heartbeat renewal interval H.
    public var heartbeatIntervalMs: UInt32
    /// A host whose heartbeat has not changed for this long is dead (D).
    public var deadIntervalMs: UInt32
    /// The longest a heartbeat or metadata I/O may take before the host fences itself.
    public var ioTimeoutMs: UInt32
    public var incompatibleFeatures: UInt64 = 0
    public var compatibleFeatures: UInt64 = 0
    /// How compare-and-writes are made atomic between hosts.
    public var atomicUpdate: AtomicUpdateMethod = .rangeLocks {
        didSet { updateCoordinationFeature() }
    }
    /// How dead hosts are fenced at the storage.
    public var fencing: FencingMethod = .none {
        didSet { updateCoordinationFeature() }
    }

    private mutating func updateCoordinationFeature() {
        if atomicUpdate == .rangeLocks && fencing == .none {
            incompatibleFeatures &= ~FormatConstants.clusterCoordinationFeature
        } else {
            incompatibleFeatures |= FormatConstants.clusterCoordinationFeature
        }
    }

    /// The volume ID stamped into every metadata sector.
    var volumeID: UInt64 { uuid.low64 }

    public init(uuid: HostUUID, label: String, creationTime: Int64, layout: VolumeLayout,
                heartbeatIntervalMs: UInt32, deadIntervalMs: UInt32, ioTimeoutMs: UInt32) {
        self.formatMajor = FormatConstants.formatMajor
        self.formatMinor = FormatConstants.formatMinor
        self.uuid = uuid
        self.label = label
        self.creationTime = creationTime
        self.layout = layout
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.deadIntervalMs = deadIntervalMs
        self.ioTimeoutMs = ioTimeoutMs
    }

    /// The sector image.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(count: FormatConstants.sectorSize)
        w.put(bytes: FormatConstants.volumeMagic, at: 0)
        w.put(formatMajor, at: 8)
        w.put(formatMinor, at: 10)
        w.put(uuid: uuid, at: 16)
        w.put(string: label, at: 32, width: 127)
        w.put(creationTime, at: 160)
        w.put(layout.deviceSize, at: 168)
        w.put(UInt32(FormatConstants.sectorSize), at: 176)
        w.put(layout.blockSize, at: 180)
        w.put(layout.totalBlocks, at: 184)
        w.put(layout.maxHosts, at: 192)
        w.put(UInt32(FormatConstants.maxFiles), at: 196)
        w.put(heartbeatIntervalMs, at: 200)
        w.put(deadIntervalMs, at: 204)
        w.put(ioTimeoutMs, at: 208)
        w.put(layout.blocksPerCluster, at: 212)
        w.put(layout.blockClusterCount, at: 216)
        w.put(layout.pointerNodeCount, at: 220)
        w.put(layout.nodesPerCluster, at: 224)
        w.put(layout.pointerClusterCount, at: 228)
        w.put(layout.journalSize, at: 232)
        let offsets: [UInt64] = [
            layout.heartbeatOffset, layout.lockOffset, UInt64(layout.lockCount), layout.nameTableOffset,
            layout.nameTableMirrorOffset, layout.descriptorOffset, layout.descriptorMirrorOffset,
            layout.blockBitmapOffset, layout.pointerBitmapOffset, layout.pointerNodeOffset,
            layout.pointerMirrorOffset, layout.journalOffset, layout.dataOffset, layout.backupHeaderOffset, layout.paxosOffset,
        ]
        for (i, value) in offsets.enumerated() { w.put(value, at: 240 + 8 * i) }
        w.put(incompatibleFeatures, at: 360)
        w.put(compatibleFeatures, at: 368)
        if incompatibleFeatures & FormatConstants.clusterCoordinationFeature != 0 {
            w.put(atomicUpdate.rawValue, at: 376)
            w.put(fencing.rawValue, at: 377)
        }
        w.put(CRC32C.checksum(w.bytes, excludingFieldAt: 12), at: 12)
        return w.bytes
    }

    /// Decodes and validates a header read at `offset` of `device`.
    ///
    /// - Throws: ``VMFSError/Code/notVMFS`` for a missing magic, ``VMFSError/Code/futureVersion``
    ///   for a newer major version, ``VMFSError/Code/corrupt`` naming the field and byte offset
    ///   for a bad checksum or an inconsistent field.
    public static func decode(_ bytes: [UInt8], offset: UInt64 = 0, device: String? = nil) throws(VMFSError) -> VolumeHeader {
        let structure = offset == 0 ? "volume header" : "backup volume header"
        func fail(_ code: VMFSError.Code, _ message: String, field: Int) -> VMFSError {
            VMFSError(code, message, location: .init(device: device, structure: structure, offset: offset + UInt64(field)))
        }
        guard bytes.count >= FormatConstants.sectorSize else {
            throw fail(.corrupt, "\(structure) is truncated", field: 0)
        }
        let r = ByteReader(Array(bytes.prefix(FormatConstants.sectorSize)))
        guard r.slice(0, 8) == FormatConstants.volumeMagic else {
            throw fail(.notVMFS, "no VMFS volume: the \(structure) magic is missing", field: 0)
        }
        let major = r.u16(8)
        let minor = r.u16(10)
        if major > FormatConstants.formatMajor {
            throw fail(.futureVersion,
                       "the volume has format version \(major).\(minor); this software reads version \(FormatConstants.formatMajor).x",
                       field: 8)
        }
        guard major == FormatConstants.formatMajor else {
            throw fail(.corrupt, "unknown format version \(major).\(minor)", field: 8)
        }
        let stored = r.u32(12)
        let computed = CRC32C.checksum(r.bytes, excludingFieldAt: 12)
        guard stored == computed else {
            throw fail(.corrupt, "\(structure) checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))",
                       field: 12)
        }
        let incompatible = r.u64(360)
        guard incompatible & ~FormatConstants.clusterCoordinationFeature == 0 else {
            throw fail(.futureVersion, "the volume uses incompatible features 0x\(String(incompatible, radix: 16)) this software does not know",
                       field: 360)
        }
        var atomicUpdate = AtomicUpdateMethod.rangeLocks
        var fencing = FencingMethod.none
        if incompatible & FormatConstants.clusterCoordinationFeature != 0 {
            guard let method = AtomicUpdateMethod(rawValue: r.u8(376)) else {
                throw fail(.futureVersion, "atomic update method \(r.u8(376)) is unknown to this software", field: 376)
            }
            guard let fence = FencingMethod(rawValue: r.u8(377)) else {
                throw fail(.futureVersion, "fencing method \(r.u8(377)) is unknown to this software", field: 377)
            }
            guard method != .rangeLocks || fence != .none else {
                throw fail(.corrupt, "incompatible feature bit 0 is set but the volume uses OFD locks without fencing", field: 376)
            }
            atomicUpdate = method
            fencing = fence
        }
        guard r.u32(176) == UInt32(FormatConstants.sectorSize) else {
            throw fail(.corrupt, "metadata sector size \(r.u32(176)) is not 4096", field: 176)
        }
        guard r.u32(196) == UInt32(FormatConstants.maxFiles) else {
            throw fail(.corrupt, "max files \(r.u32(196)) is not 255", field: 196)
        }
        let deviceSize = r.u64(168)
        let expected: VolumeLayout
        do {
            expected = try VolumeLayout.compute(deviceSize: deviceSize, blockSize: r.u32(180), maxHosts: r.u32(192),
                                                journalSize: r.u64(232), diskPaxos: atomicUpdate == .diskPaxos)
        } catch {
            throw fail(.corrupt, "inconsistent layout parameters: \(error.message)", field: 168)
        }
        var header = VolumeHeader(
            uuid: r.uuid(at: 16), label: r.string(at: 32, width: 127) ?? "", creationTime: r.i64(160),
            layout: expected, heartbeatIntervalMs: r.u32(200), deadIntervalMs: r.u32(204), ioTimeoutMs: r.u32(208))
        header.formatMajor = major
        header.formatMinor = minor
        header.compatibleFeatures = r.u64(368)
        header.atomicUpdate = atomicUpdate
        header.fencing = fencing
        // Every stored layout field must match what the parameters imply.
        let stored32: [(Int, UInt32, UInt32)] = [
            (212, r.u32(212), expected.blocksPerCluster), (216, r.u32(216), expected.blockClusterCount),
            (220, r.u32(220), expected.pointerNodeCount), (224, r.u32(224), expected.nodesPerCluster),
            (228, r.u32(228), expected.pointerClusterCount),
        ]
        for (field, value, want) in stored32 where value != want {
            throw fail(.corrupt, "layout field at +\(field) is \(value), expected \(want)", field: field)
        }
        guard r.u64(184) == expected.totalBlocks else {
            throw fail(.corrupt, "block count \(r.u64(184)) does not match the layout (\(expected.totalBlocks))", field: 184)
        }
        let offsets: [UInt64] = [
            expected.heartbeatOffset, expected.lockOffset, UInt64(expected.lockCount), expected.nameTableOffset,
            expected.nameTableMirrorOffset, expected.descriptorOffset, expected.descriptorMirrorOffset,
            expected.blockBitmapOffset, expected.pointerBitmapOffset, expected.pointerNodeOffset,
            expected.pointerMirrorOffset, expected.journalOffset, expected.dataOffset, expected.backupHeaderOffset, expected.paxosOffset,
        ]
        for (i, want) in offsets.enumerated() where r.u64(240 + 8 * i) != want {
            throw fail(.corrupt, "region offset #\(i) is \(r.u64(240 + 8 * i)), expected \(want)", field: 240 + 8 * i)
        }
        let timing = HeartbeatTiming(renewIntervalMs: header.heartbeatIntervalMs, deadIntervalMs: header.deadIntervalMs,
                                     ioTimeoutMs: header.ioTimeoutMs)
        do throws(VMFSError) { try timing.validate() } catch {
            throw fail(.corrupt, "the volume's \(error.message)", field: 200)
        }
        return header
    }
}
