/// One entry of the name table: a file name and the descriptor slot it names.
///
/// The name table is 16 sectors (mirrored) of 16 entries of 240 bytes from offset 64:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | state: 0 free, 1 in use |
/// | 1 | 1 | name length in bytes (1...127) |
/// | 2 | 2 | descriptor slot (0...254) |
/// | 4 | 4 | descriptor generation |
/// | 8 | 8 | wall time the name was made, ns |
/// | 16 | 128 | name, UTF-8, NUL padded |
public struct NameEntry: Sendable, Equatable {
    public var name: String
    public var slot: Int
    public var generation: UInt32
    public var created: Int64

    public init(name: String, slot: Int, generation: UInt32, created: Int64) {
        self.name = name
        self.slot = slot
        self.generation = generation
        self.created = created
    }
}

/// A decoded name-table sector.
struct NameTableSector: Sendable, Equatable {
    var index: Int
    /// 16 entries; `nil` for a free entry.
    var entries: [NameEntry?]
    var version: UInt64 = 0
    /// The root directory's attributes (sector 0 only; nil: none recorded yet).
    var directory: DirectoryAttributes?

    init(index: Int) {
        self.index = index
        entries = Array(repeating: nil, count: FormatConstants.nameEntriesPerSector)
    }

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.nameTable, volumeID: volumeID, address: address, version: version) { w in
            w.put(UInt32(index), at: 32)
            if index == 0, let directory { directory.encode(into: &w) }
            for (i, entry) in entries.enumerated() {
                guard let entry else { continue }
                let base = FormatConstants.nameEntriesOffset + i * FormatConstants.nameEntrySize
                let utf8 = Array(entry.name.utf8)
                w.put(UInt8(1), at: base)
                w.put(UInt8(utf8.count), at: base + 1)
                w.put(UInt16(entry.slot), at: base + 2)
                w.put(entry.generation, at: base + 4)
                w.put(entry.created, at: base + 8)
                w.put(bytes: utf8, at: base + 16, maxCount: FormatConstants.maxNameLength)
            }
        }
    }

    static func decode(_ bytes: [UInt8], index: Int, volumeID: UInt64, address: UInt64) throws(VMFSError) -> NameTableSector {
        var sector = NameTableSector(index: index)
        let structure = "name table sector \(index)"
        switch try SectorCodec.open(bytes, magic: .nameTable, volumeID: volumeID, address: address, structure: structure) {
        case .pristine:
            return sector
        case .valid(let r, let version):
            sector.version = version
            if index == 0 { sector.directory = DirectoryAttributes.decode(r) }
            guard Int(r.u32(32)) == index else {
                throw VMFSError(.corrupt, "\(structure) has index \(r.u32(32))", location: .init(structure: structure, offset: address + 32))
            }
            for i in 0..<FormatConstants.nameEntriesPerSector {
                let base = FormatConstants.nameEntriesOffset + i * FormatConstants.nameEntrySize
                let entryOffset = address + UInt64(base)
                switch r.u8(base) {
                case 0:
                    continue
                case 1:
                    let length = Int(r.u8(base + 1))
                    let slot = Int(r.u16(base + 2))
                    guard length >= 1, length <= FormatConstants.maxNameLength, slot < FormatConstants.maxFiles,
                          let name = String(validating: r.bytes[(base + 16)..<(base + 16 + length)], as: UTF8.self),
                          FileName.validationError(name) == nil else {
                        throw VMFSError(.corrupt, "\(structure) entry \(i) has an invalid name or slot",
                                        location: .init(structure: structure, offset: entryOffset))
                    }
                    sector.entries[i] = NameEntry(name: name, slot: slot, generation: r.u32(base + 4), created: r.i64(base + 8))
                default:
                    throw VMFSError(.corrupt, "\(structure) entry \(i) has state \(r.u8(base))",
                                    location: .init(structure: structure, offset: entryOffset))
                }
            }
            return sector
        }
    }
}

/// Validation of file names in the flat namespace.
public enum FileName {
    /// Why `name` is not a valid file name, or `nil` when it is.
    public static func validationError(_ name: String) -> VMFSError? {
        let utf8 = Array(name.utf8)
        if utf8.isEmpty { return VMFSError(.invalidArgument, "a file name cannot be empty") }
        if utf8.count > FormatConstants.maxNameLength {
            return VMFSError(.nameTooLong, "the name is \(utf8.count) bytes; names are at most \(FormatConstants.maxNameLength) bytes of UTF-8")
        }
        if utf8.contains(0x2F) {
            return VMFSError(.invalidArgument, "'\(name)' contains '/': the volume has a flat namespace without directories")
        }
        if utf8.contains(0) { return VMFSError(.invalidArgument, "a file name cannot contain a NUL byte") }
        if name == "." || name == ".." { return VMFSError(.invalidArgument, "'\(name)' is reserved") }
        return nil
    }
}
