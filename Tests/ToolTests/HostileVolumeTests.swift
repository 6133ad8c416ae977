import Foundation
import Testing
import VMFSTestSupport

/// The tools meet metadata rewritten with valid checksums but absurd values.
@Suite("Tools on hostile volumes")
struct HostileVolumeTests {
    @Test func infoClampsAndReportsABitmapThatClaimsTooMuchFreeSpace() throws {
        let scratch = Scratch("hostile-info")
        let image = scratch.file("lun.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "1G", "--journal-size", "1M", image] + fastMkfsFlags).status == 0)
        let payload = scratch.file("payload")
        try Data(repeating: 3, count: 3 << 20).write(to: URL(fileURLWithPath: payload))
        #expect(try runTool("vmfs", ["put", image, payload, "f"]).status == 0)
        try FieldRewriter(path: image).rewrite(.blockBitmap(cluster: 0), field: 40, to: UInt32.max)

        let info = try runTool("vmfs", ["info", image])
        #expect(info.status == 0, "\(info.output)")
        #expect(info.stderr.contains("block cluster 0 bitmap") && info.stderr.contains("fsck.vmfs"), "\(info.output)")
        struct Output: Decodable { var totalBlocks: UInt64; var freeBlocks: UInt64 }
        let json = try runTool("vmfs", ["info", "--json", image])
        let parsed = try JSONDecoder().decode(Output.self, from: Data(json.stdout.utf8))
        #expect(parsed.freeBlocks < parsed.totalBlocks)
    }
}
