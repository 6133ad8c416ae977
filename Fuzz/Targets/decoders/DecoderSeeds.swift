@testable import VMFSCore
import FuzzSupport

/// Seeds: the real sectors of the seed volume, one per structure the seed wrote (its header,
/// heartbeat slots, lock records, name table, descriptors, pointer blocks, bitmaps, journal
/// headers), each behind the selector, flags and index that decode it.
enum DecoderSeeds {
    static func make() -> [(name: String, bytes: [UInt8])] {
        let seed = SeedVolume.shared
        let layout = seed.header.layout
        var seeds: [(String, [UInt8])] = []
        func add(_ decoder: Decoder, _ name: String, index: Int, flags: UInt8 = 0, at offset: UInt64) {
            let selector = UInt8(Decoder.allCases.firstIndex(of: decoder) ?? 0)
            seeds.append(("\(name)-\(index)", [selector, flags] + SeedEncoding.little(UInt16(index)) + seed.snapshot.sector(at: offset)))
        }
        add(.volumeHeader, "header", index: 0, at: 0)
        for (family, indices) in seed.written {
            for index in indices.prefix(4) {
                switch family {
                case .heartbeatSlot: add(.heartbeatSlot, "heartbeat", index: index, at: layout.heartbeatSlot(index))
                case .lockRecord:
                    let kind: UInt16 = index == 0 ? 0 : index < FormatConstants.volumeLockIndex ? 1
                        : index == FormatConstants.volumeLockIndex ? 2 : index < FormatConstants.firstClusterLock + Int(layout.blockClusterCount) ? 3 : 4
                    add(.lockRecord, "lock", index: index, flags: UInt8(kind << 1), at: layout.lockRecord(index))
                case .nameTable: add(.nameTable, "names", index: index, at: layout.nameTableSector(index))
                case .fileDescriptor: add(.fileDescriptor, "descriptor", index: index, at: layout.descriptor(index))
                case .pointerBlock: add(.pointerNode, "pointer", index: index, at: layout.pointerNode(UInt32(index)))
                case .blockBitmap:
                    let items = Int(layout.blocksPerCluster)
                    add(.bitmap, "block-bitmap", index: index, flags: UInt8((items - 64) / 256) << 2, at: layout.blockBitmap(index))
                case .pointerBitmap:
                    let items = Int(layout.nodesPerCluster)
                    add(.bitmap, "pointer-bitmap", index: index, flags: UInt8((items - 64) / 256) << 2 | 2, at: layout.pointerBitmap(index))
                case .journalHeader: add(.journalHeader, "journal-header", index: index, at: layout.journal(index))
                }
            }
        }
        return seeds
    }
}
