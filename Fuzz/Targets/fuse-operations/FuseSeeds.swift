import FuzzSupport

/// Seeds: scripts that look files up, open, read, write, preallocate, seek, change sizes and
/// times, create, list, rename, release and unlink, with the writeback cache on and off and on
/// a read-only mount (see FuseScript for the encoding).
enum FuseSeeds {
    typealias E = SeedEncoding

    static func make() -> [(name: String, bytes: [UInt8])] {
        let lookupData: [UInt8] = [0, 1, 0]                   // LOOKUP data.bin in the root
        let lookupSparse: [UInt8] = [0, 2, 0]                 // LOOKUP sparse.vmdk
        let openReadWrite: [UInt8] = [4, 1, 2]                // OPEN node 1 O_RDWR
        let read: [UInt8] = [5, 0] + E.boundary(0) + E.boundary(5)
        let write: [UInt8] = [6, 0] + E.boundary(5) + E.boundary(7)
        let writeFar: [UInt8] = [6, 0] + E.boundary(5) + E.boundary(16, delta: -1)
        let allocate: [UInt8] = [7, 0] + E.boundary(7) + E.boundary(8) + [1]
        let seekData: [UInt8] = [8, 0] + E.boundary(0) + [0]
        let seekHole: [UInt8] = [8, 0] + E.boundary(13) + [1]
        let truncate: [UInt8] = [2, 0] + E.little(UInt16(8)) + E.boundary(8) + E.boundary(0) + E.boundary(0) + E.boundary(0)
            + [UInt8](repeating: 0, count: 18)
        let create: [UInt8] = [3, 0] + E.little(UInt16(0o644)) + [0xC0] + E.little(UInt16(5)) + Array("fresh".utf8) + [0, 0]
        let list: [UInt8] = [13, 0, 14, 0] + E.boundary(0) + E.boundary(5) + [1, 20, 0]
        let rename: [UInt8] = [10, 0, 0xC0] + E.little(UInt16(5)) + Array("fresh".utf8) + [0xC0] + E.little(UInt16(5)) + Array("moved".utf8) + [0]
        let release: [UInt8] = [15, 0]
        let unlink: [UInt8] = [12, 0xC0] + E.little(UInt16(5)) + Array("moved".utf8) + [0]
        let copy: [UInt8] = [9, 0] + E.boundary(0) + [0] + E.boundary(7) + E.boundary(5)
        let script = lookupData + openReadWrite + read + write + allocate + seekData + seekHole + truncate + create + list
            + rename + release + unlink + [18, 0]
        return [
            ("writeback", [0] + script),
            ("no-writeback", [1] + script),
            ("read-only", [2] + lookupData + [4, 1, 0] + read + seekData + list),
            ("far-write", [0] + lookupSparse + openReadWrite + writeFar + seekHole + copy + release),
            ("crashed-host-kept", [4] + lookupData + openReadWrite + write + release),
        ]
    }
}
