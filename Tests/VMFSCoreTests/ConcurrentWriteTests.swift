import Dispatch
import Synchronization
import Testing
@testable import VMFSCore

@Suite("Concurrent writers on one handle")
struct ConcurrentWriteTests {
    /// Threads fill new blocks of one file at once (a FUSE daemon or virtio queue does this):
    /// their block-map changes land in the same pointer block and the same transaction, while
    /// each thread reads back through the decoded pointer-block cache. Every byte must read back.
    @Test func parallelAllocatingWritesReadBack() throws {
        let device = try makeMemoryVolume(size: 2 << 30)
        let volume = try Volume.mount(device: device, options: hostOptions("writers"))
        defer { try? volume.unmount() }
        let handle = try volume.create("disk", access: .readWrite)
        // Past the descriptor's direct entries, so that every mapping lives in pointer blocks.
        let workers = 8, blocksPerWorker = 48, chunk = 64 << 10
        let first = FormatConstants.directPointers + 8
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for round in 0..<blocksPerWorker {
                let block = first + round * workers + worker
                // Two chunks per block: the second write finds the block mapped.
                for part in 0..<2 {
                    let offset = UInt64(block) << 20 + UInt64(part * (1 << 19))
                    let data = pattern(chunk, seed: UInt64(block * 2 + part))
                    do {
                        try handle.write(bytes: data, at: offset)
                        let back = try handle.read(count: chunk, at: offset)
                        if back != data { failures.withLock { $0.append("block \(block) part \(part) read back differently") } }
                    } catch {
                        failures.withLock { $0.append("block \(block): \(error)") }
                    }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        for block in first..<(first + workers * blocksPerWorker) {
            for part in 0..<2 {
                let offset = UInt64(block) << 20 + UInt64(part * (1 << 19))
                #expect(try handle.read(count: chunk, at: offset) == pattern(chunk, seed: UInt64(block * 2 + part)))
            }
        }
        try handle.close()
    }
}

@Suite("Concurrent allocation on one host")
struct ConcurrentAllocationTests {
    /// Threads of one host grow and shrink different files at once while clusters are leased,
    /// filled, given back after commits and leased again. The volume never holds more than
    /// half its blocks, so no write may fail for space, and the allocator's counts must stay
    /// true to the bitmaps (checked by fsck).
    @Test func leasingRacesNeverRunOutOfSpace() throws {
        let device = try makeMemoryVolume(size: 512 << 20)
        let volume = try Volume.mount(device: device, options: hostOptions("leases"))
        let total = try volume.statistics().freeBlocks
        let workers = 4
        let perWorker = Int(total) / 2 / workers
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            do {
                let handle = try volume.create("file-\(worker)", access: .readWrite)
                let block = [UInt8](repeating: UInt8(worker + 1), count: 1 << 20)
                for round in 0..<10 {
                    // Fill a random-ish set of blocks, then free most of them again.
                    for i in 0..<perWorker {
                        let position = UInt64((i * 7 + round * 3) % (perWorker * 2))
                        try handle.write(bytes: block, at: position << 20)
                    }
                    try handle.truncate(to: UInt64(round % 3) << 20)
                    if round % 2 == 1 { try handle.sync() }
                }
                try handle.close()
            } catch {
                failures.withLock { $0.append("worker \(worker): \(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        try volume.unmount()
        var check = CheckOptions()
        check.force = true
        #expect(VolumeChecker(device: device.readOnlyView(), options: check).run().exitCode == 0)
    }
}
