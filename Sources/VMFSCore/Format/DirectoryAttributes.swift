/// The root directory's mode, owner and times, kept in name table sector 0 after its 16
/// entries (bytes 3904…3943), and changed under the file table lock like the names:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 2 | record version: 0 = no record (the defaults below), 1 = these fields |
/// | 2 | 2 | zero |
/// | 4 | 4 | permission bits (`0o7777`; the type is always a directory) |
/// | 8 | 4 | owner uid |
/// | 12 | 4 | owner gid |
/// | 16 | 8 | access time, ns since the epoch |
/// | 24 | 8 | modification time (a name was created, removed or renamed), ns |
/// | 32 | 8 | change time (the names or these attributes changed), ns |
///
/// A volume without the record (made before it existed) has a root of mode 0755 owned by
/// root, with every time the volume's creation time.
public struct DirectoryAttributes: Sendable, Equatable {
    /// Permission bits (`0o7777`).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var accessTime: Int64
    public var modificationTime: Int64
    public var changeTime: Int64

    /// The root of a volume that has no record: 0755, root:root, all times `created`.
    public static func defaults(created: Int64) -> DirectoryAttributes {
        DirectoryAttributes(mode: 0o755, uid: 0, gid: 0, accessTime: created, modificationTime: created, changeTime: created)
    }

    public init(mode: UInt32, uid: UInt32, gid: UInt32, accessTime: Int64, modificationTime: Int64, changeTime: Int64) {
        self.mode = mode & 0o7777
        self.uid = uid
        self.gid = gid
        self.accessTime = accessTime
        self.modificationTime = modificationTime
        self.changeTime = changeTime
    }

    /// Where the record starts in name table sector 0.
    static let offset = FormatConstants.nameEntriesOffset + FormatConstants.nameEntriesPerSector * FormatConstants.nameEntrySize
    static let version: UInt16 = 1

    func encode(into writer: inout ByteWriter) {
        let base = Self.offset
        writer.put(Self.version, at: base)
        writer.put(mode & 0o7777, at: base + 4)
        writer.put(uid, at: base + 8)
        writer.put(gid, at: base + 12)
        writer.put(accessTime, at: base + 16)
        writer.put(modificationTime, at: base + 24)
        writer.put(changeTime, at: base + 32)
    }

    /// The record in a name table sector 0, or nil when it has none. Later versions keep these
    /// fields where they are; bits of the mode beyond `0o7777` are ignored.
    static func decode(_ reader: ByteReader) -> DirectoryAttributes? {
        let base = offset
        guard reader.u16(base) != 0 else { return nil }
        return DirectoryAttributes(mode: reader.u32(base + 4), uid: reader.u32(base + 8), gid: reader.u32(base + 12),
                                   accessTime: reader.i64(base + 16), modificationTime: reader.i64(base + 24),
                                   changeTime: reader.i64(base + 32))
    }
}
