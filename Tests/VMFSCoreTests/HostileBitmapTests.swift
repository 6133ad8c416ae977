import Testing
import VMFSTestSupport
@testable import VMFSCore

/// A bitmap whose stored free count exceeds its cluster cannot make free space exceed the volume.
@Suite("Hostile allocation bitmaps")
struct HostileBitmapTests {
    @Test func aFreeCountAboveItsClusterIsClampedAndReported() throws {
        let device = try makeMemoryVolume()
        do {
            let volume = try Volume.mount(device: device, options: hostOptions("writer"))
            let handle = try volume.create("f", access: .readWrite)
            try handle.write(bytes: pattern(3 << 20, seed: 1), at: 0)
            try handle.close()
            try volume.unmount()
        }
        try FieldRewriter(device: device).rewrite(.blockBitmap(cluster: 0), field: 40, to: UInt32.max)
        let inspected = try VolumeInspector(device: device.readOnlyView()).statistics()
        #expect(inspected.freeBlocks < inspected.totalBlocks)
        #expect(inspected.damagedBitmaps == ["block cluster 0 bitmap"])
        let volume = try Volume.mount(device: device, options: hostOptions("reader"))
        defer { try? volume.unmount() }
        let mounted = try volume.statistics()
        #expect(mounted.freeBlocks < mounted.totalBlocks && mounted.damagedBitmaps.count == 1)
    }
}
