@testable public import VMFSCore
import VMFSTestSupport

/// Applies "which structure, which field, what value" edits from fuzz input to a copy of the
/// ``SeedVolume``, re-sealing every sector with ``FieldRewriter`` (checksum, self address,
/// version, mirrors, journal commit checksums) so that the edit gets past the checksums and
/// only its meaning is wrong. One edit in sixteen is written unsealed, for the checksum paths.
///
/// An edit is 8–16 bytes: a family byte, a 16-bit index selector (mostly one of the sectors the
/// seed wrote, sometimes any index of the region), a ``FieldEdit``, and a flags byte.
public struct StructureEditor {
    public let seed: SeedVolume
    private let rewriter: FieldRewriter

    /// Edits `device`, which holds a fresh copy of `seed`.
    public init(seed: SeedVolume, device: any BlockDevice) throws {
        self.seed = seed
        rewriter = try FieldRewriter(device: device)
    }

    /// The kinds of target an edit can have.
    private enum Target: Int, CaseIterable {
        case volumeHeader, backupHeader, heartbeatSlot, lockRecord, nameTable, fileDescriptor, pointerBlock,
             blockBitmap, pointerBitmap, journalHeader, journalTransaction, journalImage
    }

    /// Reads one edit from `input` and applies it; returns what it did, `nil` when nothing.
    @discardableResult
    public func applyEdit(from input: inout FuzzInput) -> String? {
        let target = Target.allCases[Int(input.byte()) % Target.allCases.count]
        let selector = input.integer(UInt16.self)
        switch target {
        case .journalTransaction: return editTransaction(selector, &input)
        case .journalImage: return editJournalImage(selector, &input)
        default: break
        }
        guard let (structure, kind) = resolve(target, selector) else { return nil }
        let edit = FieldEdit(kind: kind, from: &input)
        let flags = input.byte()
        do {
            if flags & 0x0F == 0x0F {
                var bytes = try rewriter.read(structure)
                edit.apply(to: &bytes)
                try rewriter.device.write(bytes: bytes, at: rewriter.address(of: structure))
            } else {
                try rewriter.rewrite(structure, bumpVersion: flags & 1 == 0) { edit.apply(to: &$0) }
            }
        } catch {
            return nil
        }
        return "\(structure) \(edit)\(flags & 0x0F == 0x0F ? " unsealed" : "")"
    }

    private func pick(_ family: SeedVolume.Family, _ selector: UInt16) -> Int {
        let written = seed.written[family] ?? []
        if selector < 0xF000, !written.isEmpty { return written[Int(selector) % written.count] }
        return Int(selector & 0x0FFF) % max(seed.count(of: family), 1)
    }

    private func resolve(_ target: Target, _ selector: UInt16) -> (FieldRewriter.Structure, DocumentedFields.Kind)? {
        switch target {
        case .volumeHeader: (.volumeHeader, .volumeHeader)
        case .backupHeader: (.backupVolumeHeader, .volumeHeader)
        case .heartbeatSlot: (.heartbeatSlot(pick(.heartbeatSlot, selector)), .heartbeatSlot)
        case .lockRecord: (.lockRecord(pick(.lockRecord, selector)), .lockRecord)
        case .nameTable: (.nameTableSector(pick(.nameTable, selector)), .nameTable)
        case .fileDescriptor: (.fileDescriptor(slot: pick(.fileDescriptor, selector)), .fileDescriptor)
        case .pointerBlock: (.pointerBlock(UInt32(pick(.pointerBlock, selector))), .pointerBlock)
        case .blockBitmap: (.blockBitmap(cluster: pick(.blockBitmap, selector)), .bitmap)
        case .pointerBitmap: (.pointerBitmap(cluster: pick(.pointerBitmap, selector)), .bitmap)
        case .journalHeader: (.journalHeader(slot: pick(.journalHeader, selector)), .journalHeader)
        case .journalTransaction, .journalImage: nil
        }
    }

    /// Edits the descriptor or the commit record of one of the crashed host's transactions.
    private func editTransaction(_ selector: UInt16, _ input: inout FuzzInput) -> String? {
        guard !seed.transactions.isEmpty else { return nil }
        let transaction = seed.transactions[Int(selector) % seed.transactions.count]
        let onCommit = input.byte() & 1 != 0
        let edit = FieldEdit(kind: onCommit ? .journalCommit : .journalDescriptor, from: &input)
        do {
            try rewriter.rewriteTransaction(journal: seed.crashedSlot, at: transaction.sector) { descriptor, commit in
                if onCommit { edit.apply(to: &commit) } else { edit.apply(to: &descriptor) }
            }
        } catch {
            return nil
        }
        return "journal \(seed.crashedSlot) transaction at \(transaction.sector) \(onCommit ? "commit" : "descriptor") \(edit)"
    }

    /// Edits a field of a sector image inside one of the crashed host's transactions (the image
    /// is re-sealed for its home address and the commit checksum recomputed), so that replay
    /// writes hostile metadata home.
    private func editJournalImage(_ selector: UInt16, _ input: inout FuzzInput) -> String? {
        let images = seed.transactions.flatMap { t in (0..<t.records).map { (t.sector, t.sector + 1 + $0) } }
        guard !images.isEmpty else { return nil }
        let (start, sector) = images[Int(selector) % images.count]
        let place = FieldRewriter.Structure.journalSector(slot: seed.crashedSlot, sector: sector)
        do {
            var image = try rewriter.read(place)
            let kind: DocumentedFields.Kind = switch FieldRewriter.load(UInt32.self, from: image, at: 0) {
            case SectorMagic.descriptor.rawValue: .fileDescriptor
            case SectorMagic.nameTable.rawValue: .nameTable
            case SectorMagic.pointer.rawValue: .pointerBlock
            case SectorMagic.bitmap.rawValue: .bitmap
            default: .fileDescriptor
            }
            let edit = FieldEdit(kind: kind, from: &input)
            edit.apply(to: &image)
            SectorSealing.seal(&image, address: FieldRewriter.load(UInt64.self, from: image, at: 16), volumeID: seed.header.volumeID)
            try rewriter.device.write(bytes: image, at: rewriter.address(of: place))
            try rewriter.rewriteTransaction(journal: seed.crashedSlot, at: start) { _, _ in }
            return "journal \(seed.crashedSlot) image at sector \(sector) \(edit)"
        } catch {
            return nil
        }
    }
}
