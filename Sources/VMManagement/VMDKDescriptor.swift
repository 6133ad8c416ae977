/// A VMware `monolithicFlat` disk descriptor (`NAME.vmdk`) naming the raw extent `NAME-flat.vmdk`,
/// so that qemu-img and VMware tools can open the disk.
public struct VMDKDescriptor: Sendable, Equatable {
    /// Size of the disk in bytes (a multiple of 512).
    public var byteCount: UInt64
    /// File name of the raw extent, relative to the descriptor.
    public var extentFileName: String
    /// Content ID (VMware's change counter for the descriptor).
    public var contentID: UInt32

    public init(byteCount: UInt64, extentFileName: String, contentID: UInt32 = 0xFFFF_FFFE) {
        self.byteCount = byteCount
        self.extentFileName = extentFileName
        self.contentID = contentID
    }

    /// The descriptor text.
    public var text: String {
        let sectors = byteCount / 512
        let cylinders = min(sectors / (255 * 63), 65535)
        return """
            # Disk DescriptorFile
            version=1
            encoding="UTF-8"
            CID=\(String(contentID, radix: 16))
            parentCID=ffffffff
            createType="monolithicFlat"

            # Extent description
            RW \(sectors) FLAT "\(extentFileName)" 0

            # The Disk Data Base
            #DDB

            ddb.adapterType = "lsilogic"
            ddb.geometry.cylinders = "\(cylinders)"
            ddb.geometry.heads = "255"
            ddb.geometry.sectors = "63"
            ddb.virtualHWVersion = "4"

            """
    }

    /// Largest extent accepted, in 512-byte sectors: its size in bytes must fit a file offset.
    public static let maximumSectors = UInt64(Int64.max) / 512

    /// Parses a descriptor; only single-extent flat disks starting at offset 0 are accepted.
    ///
    /// The extent line is `ACCESS SECTORS FLAT NAME [OFFSET]`; NAME is quoted (and may then hold
    /// spaces) or a single word, and never holds a double quote, which ``text`` could not write.
    ///
    /// - Throws: ``VMError/Code/malformedConfiguration`` naming the file, the field and the value
    ///   when the extent line is missing, repeated, or has a sector count outside
    ///   1…``maximumSectors``, an empty, unterminated or quote-holding file name, or an offset other than 0.
    public init(parsing text: String, fileName: String) throws(VMError) {
        var extent: (UInt64, String)?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
            guard parts.count == 4, parts[0] == "RW" || parts[0] == "RDONLY", parts[2] == "FLAT" else { continue }
            guard extent == nil else {
                throw VMError(.malformedConfiguration, "\(fileName): only one flat extent is supported")
            }
            guard let sectors = UInt64(parts[1]), (1...Self.maximumSectors).contains(sectors) else {
                throw VMError(.malformedConfiguration, "\(fileName): the extent's sector count \"\(parts[1].prefix(40))\" is not a number "
                              + "in 1…\(Self.maximumSectors)")
            }
            let (name, offset) = try Self.extentName(parts[3], fileName: fileName)
            if !offset.isEmpty, offset != "0" {
                throw VMError(.malformedConfiguration, "\(fileName): the extent's offset \"\(offset.prefix(40))\" is not 0; "
                              + "only extents that start at the beginning of their file are supported")
            }
            extent = (sectors, name)
        }
        guard let extent else { throw VMError(.malformedConfiguration, "\(fileName): no FLAT extent line") }
        self.init(byteCount: extent.0 * 512, extentFileName: extent.1)
    }

    /// Splits the rest of an extent line after `FLAT ` into the file name and what follows it.
    private static func extentName(_ rest: String, fileName: String) throws(VMError) -> (name: String, offset: String) {
        let name: Substring
        let after: Substring
        if rest.hasPrefix("\"") {
            let quoted = rest.dropFirst()
            guard let close = quoted.firstIndex(of: "\"") else {
                throw VMError(.malformedConfiguration, "\(fileName): the extent's file name \(rest.prefix(40)) has no closing quote")
            }
            name = quoted[..<close]
            after = quoted[quoted.index(after: close)...]
        } else {
            name = rest.prefix { $0 != " " }
            after = rest.dropFirst(name.count)
        }
        let trimmed = name.trimmedOfWhitespace
        guard !trimmed.isEmpty, !trimmed.contains("\"") else {
            throw VMError(.malformedConfiguration, "\(fileName): the extent's file name \"\(name.prefix(40))\" is empty or holds a double quote")
        }
        return (trimmed, after.trimmedOfWhitespace)
    }
}
