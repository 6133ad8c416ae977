import Foundation
import Synchronization
import Testing
@testable import VMFSCore
import VMFSTestSupport

/// Writes that do not start or end on a sector go through a bounce buffer and a read-modify-write
/// of their edge sectors, on the devices that move whole sectors: an `O_DIRECT` image file and an
/// iSCSI LUN. These tests hold the two ways that can lose bytes.
@Suite("Unaligned writes on sector devices")
struct UnalignedWriteTests {
    /// The devices under test: an O_DIRECT image, and a tgt LUN when tgtd can run here.
    private static func devices(_ scratch: Scratch) throws -> [(name: String, device: any BlockDevice, keep: AnyObject?)] {
        let image = scratch.file("direct.img")
        FileManager.default.createFile(atPath: image, contents: nil)
        guard truncate(image, 64 << 20) == 0 else { throw VMFSError(.io, "cannot size \(image)") }
        var devices: [(name: String, device: any BlockDevice, keep: AnyObject?)] = [("O_DIRECT image", try FileBlockDevice(path: image), nil)]
        if isRoot && TgtTarget.isAvailable {
            let tgt = try TgtTarget()
            let target = try tgt.addTarget(size: 64 << 20)
            devices.append(("iSCSI LUN", try ISCSIBlockDevice(url: tgt.url(target)), tgt))
        }
        return devices
    }

    @Test("an unaligned write puts the caller's bytes on the device, whatever the heap does after it")
    func unalignedWritesLandIntact() throws {
        // The bounce buffer of an unaligned write must live until the command that points into
        // it has completed: freed earlier, malloc writes its free-list pointers into the first
        // bytes and those go to the device (issue 15's stale bytes were 0x00007f…0090 pointers).
        let scratch = Scratch("unaligned-intact")
        for (name, device, keep) in try Self.devices(scratch) {
            var written: [(offset: UInt64, bytes: [UInt8])] = []
            var ballast: [[UInt8]] = []
            var state: UInt64 = 0x5eed
            func next(_ bound: UInt64) -> UInt64 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (state >> 33) % bound
            }
            for round in 0..<300 {
                // Offsets in their own 16 KiB slots so no two writes overlap; sizes past malloc's
                // small-chunk caches so a freed bounce lands in a bin that writes pointers.
                let offset = UInt64(round) * 16384 + next(4096)
                let bytes = pattern(1500 + Int(next(8000)), seed: UInt64(round) + 1)
                try bytes.withUnsafeBytes { try device.write($0, at: offset) }
                written.append((offset, bytes))
                // Heap churn between writes: allocations that keep freed chunks from merging away.
                ballast.append([UInt8](repeating: UInt8(truncatingIfNeeded: round), count: 2048 + Int(next(6000))))
                if ballast.count > 8 { ballast.remove(at: Int(next(UInt64(ballast.count)))) }
            }
            for (index, write) in written.enumerated() {
                let back = try device.read(count: write.bytes.count, at: write.offset)
                let first = back.indices.first { back[$0] != write.bytes[$0] }
                #expect(first == nil, "\(name): write \(index) at byte \(write.offset) (\(write.bytes.count) bytes) reads back different from +\(first ?? 0)")
            }
            withExtendedLifetime(keep) {}
        }
    }

    @Test("concurrent unaligned writes to different bytes of the same sectors all land")
    func concurrentWritesSharingSectorsAllLand() throws {
        let scratch = Scratch("unaligned-shared")
        for (name, device, keep) in try Self.devices(scratch) {
            let writers = 8
            let slice = 64  // each writer owns bytes [w * 64, w * 64 + 64) of every sector
            let sectors = 64
            let rounds = 20
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: writers) { writer in
                for round in 0..<rounds {
                    for sector in 0..<sectors {
                        let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: writer * 31 + round * 7 + sector + 1), count: slice)
                        do {
                            try bytes.withUnsafeBytes { try device.write($0, at: UInt64(sector * 512 + writer * slice)) }
                        } catch {
                            failures.withLock { $0.append("writer \(writer): \(error)") }
                        }
                    }
                }
            }
            #expect(failures.withLock { $0 }.isEmpty, "\(name): \(failures.withLock { $0 })")
            let back = try device.read(count: sectors * 512, at: 0)
            var lost: [String] = []
            for sector in 0..<sectors {
                for writer in 0..<writers {
                    let expected = UInt8(truncatingIfNeeded: writer * 31 + (rounds - 1) * 7 + sector + 1)
                    let at = sector * 512 + writer * slice
                    if back[at..<(at + slice)].contains(where: { $0 != expected }) { lost.append("sector \(sector) writer \(writer)") }
                }
            }
            #expect(lost.isEmpty, "\(name): last writes lost in \(lost.count) slices, first \(lost.prefix(5))")
            withExtendedLifetime(keep) {}
        }
    }
}
