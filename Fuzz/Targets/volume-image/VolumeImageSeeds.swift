import FuzzSupport

/// Seeds: no edit, then one edit of an early documented field of each kind of structure set to
/// 2^64 − 1 or 0, each followed by a short script that touches every file operation.
enum VolumeImageSeeds {
    static func make() -> [(name: String, bytes: [UInt8])] {
        typealias E = SeedEncoding
        let script: [UInt8] = [
            0, 1] + E.boundary(7) + E.boundary(0) + [     // read 1 MiB at 0 of data.bin
            1, 3] + E.boundary(5) + E.boundary(7) + [     // write 4 KiB at 1 MiB of thick-flat.vmdk
            5, 2] + E.boundary(13) + E.boundary(0) + [    // extents of sparse.vmdk
            2, 1] + E.boundary(8) + [                     // truncate data.bin to 2 MiB
            4, 3] + E.boundary(0) + E.boundary(7) + [     // punch the first MiB of thick-flat.vmdk
            7, 0xE0, 5] + Array("fresh".utf8) + [          // create "fresh"
            9, 0, 0xE0, 4] + Array("moved".utf8) + [0,     // rename inline.txt to moved
            10, 0, 11, 0]
        // The crashed host's next incarnation reclaims its slot and adopts its locks, without
        // (0xF3) and with (0xFC) a hand-over to a third; 0xF4 does so after one lock-record edit.
        var seeds: [(String, [UInt8])] = [("no-edit", [0] + script), ("reclaim", [0xF3] + script), ("hand-over", [0xFC] + script)]
        seeds.append(("reclaim-edit-lock", [0xF4, 3] + E.little(UInt16(0)) + E.setField(span: 1, to: E.maximum) + [0] + script))
        // Targets: header, backup, heartbeat, lock, name table, descriptor, pointer block, block
        // bitmap, pointer bitmap, journal header, journal transaction, journal image.
        for target in 0..<12 {
            for span in [1, 4, 7] {
                let family: [UInt8] = [UInt8(target)] + E.little(UInt16(target == 2 || target == 9 ? 1 : 0))
                let commit: [UInt8] = target == 10 ? [0] : []
                let flags: [UInt8] = target >= 10 ? [] : [0]
                let value = span == 4 ? E.boundary(0) : E.maximum
                seeds.append(("edit-\(target)-\(span)", [1] + family + commit + E.setField(span: span, to: value) + flags + script))
            }
        }
        return seeds
    }
}
