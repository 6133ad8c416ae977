import Testing
import VMFSTestSupport
@testable import VMFSCore

/// Block numbers read from disk are checked on every path: a block-map entry that points
/// outside the volume, at its backup header, or at another file's block is refused with an
/// error naming the file, the file block and the value, and nothing is written there.
@Suite("Hostile block maps")
struct HostileBlockMapTests {
    /// Offset of direct entry `i` in a file descriptor (docs/FORMAT.md §6).
    private static func directEntry(_ i: Int) -> Int { 272 + 4 * i }
    private static let unwritten: UInt32 = 1 << 31

    /// A volume with `victim` (one written block of a known pattern) and `thick` (two
    /// preallocated, never written blocks). Returns the device and the two slots.
    private func volumeWithVictim() throws -> (MemoryBlockDevice, victim: Int, thick: Int) {
        let device = try makeMemoryVolume()
        let volume = try Volume.mount(device: device, options: hostOptions("maker"))
        let victim = try volume.create("victim", access: .readWrite)
        try victim.write(bytes: pattern(1 << 20, seed: 7), at: 0)
        let thick = try volume.create("thick", access: .readWrite)
        try thick.allocate(offset: 0, length: 2 << 20)
        let slots = (victim.slot, thick.slot)
        try victim.close()
        try thick.close()
        try volume.unmount()
        return (device, slots.0, slots.1)
    }

    /// Writes into `thick` after its first entry was set to `entry`; returns the error.
    private func writeThroughForgedEntry(_ entry: UInt32, device: MemoryBlockDevice, thick: Int) throws -> VMFSError? {
        let attacker = try FieldRewriter(device: device)
        try attacker.rewrite(.fileDescriptor(slot: thick), field: Self.directEntry(0), to: entry)
        let volume = try Volume.mount(device: device, options: hostOptions("user"))
        defer { try? volume.unmount() }
        let handle = try volume.open("thick", access: .readWrite)
        defer { try? handle.close() }
        do {
            try handle.write(bytes: pattern(4096, seed: 9), at: 4096)
            try handle.sync()
            return nil
        } catch {
            return error
        }
    }

    private func expectNamed(_ error: VMFSError?, value: UInt64) {
        #expect(error?.code == .corrupt, "\(String(describing: error))")
        let message = error?.message ?? ""
        #expect(message.contains("'thick'") && message.contains("file block 0") && message.contains("\(value)"), "\(message)")
    }

    @Test func anUnwrittenEntryPastTheEndOfTheVolumeIsRefused() throws {
        let (device, _, thick) = try volumeWithVictim()
        let totalBlocks = try Volume.readHeader(device).layout.totalBlocks
        let bad = UInt32(totalBlocks + 1000)
        let writesBefore = device.ioCounters.bytesWritten
        let error = try writeThroughForgedEntry(bad | Self.unwritten, device: device, thick: thick)
        expectNamed(error, value: UInt64(bad))
        // Mount and unmount write metadata; no data block (1 MiB) may have been written.
        #expect(device.ioCounters.bytesWritten - writesBefore < 1 << 20)
    }

    @Test func anUnwrittenEntryAtTheBlockCountLeavesTheBackupHeaderAlone() throws {
        let (device, _, thick) = try volumeWithVictim()
        let layout = try Volume.readHeader(device).layout
        let backup = try device.read(count: 4096, at: layout.backupHeaderOffset)
        let error = try writeThroughForgedEntry(UInt32(layout.totalBlocks) | Self.unwritten, device: device, thick: thick)
        expectNamed(error, value: layout.totalBlocks)
        #expect(try device.read(count: 4096, at: layout.backupHeaderOffset) == backup)
        #expect(try device.read(count: 4096, at: layout.backupHeaderOffset - 4096) == [UInt8](repeating: 0, count: 4096))
    }

    @Test func anUnwrittenEntryOwnedByAnotherFileLeavesThatFileAlone() throws {
        let (device, victim, thick) = try volumeWithVictim()
        let attacker = try FieldRewriter(device: device)
        let victimBlock = try attacker.field(.fileDescriptor(slot: victim), at: Self.directEntry(0), as: UInt32.self)
        let error = try writeThroughForgedEntry(victimBlock | Self.unwritten, device: device, thick: thick)
        expectNamed(error, value: UInt64(victimBlock))
        #expect(error?.message.contains("another file") == true, "\(String(describing: error))")
        let volume = try Volume.mount(device: device, options: hostOptions("reader"))
        defer { try? volume.unmount() }
        #expect(try volume.open("victim").read(count: 1 << 20, at: 0) == pattern(1 << 20, seed: 7))
    }

    @Test func anUnwrittenEntryTheBitmapCallsFreeIsRefused() throws {
        let (device, _, thick) = try volumeWithVictim()
        // A block inside the volume that no file uses and the bitmap marks free.
        let free = UInt32(try Volume.readHeader(device).layout.totalBlocks - 3)
        let error = try writeThroughForgedEntry(free | Self.unwritten, device: device, thick: thick)
        expectNamed(error, value: UInt64(free))
        #expect(error?.message.contains("free") == true, "\(String(describing: error))")
    }

    /// A written entry is checked against the bitmap too, on the data path's fast lane.
    @Test func aWrittenEntryTheBitmapCallsFreeIsNeitherReadNorWritten() throws {
        let (device, _, thick) = try volumeWithVictim()
        let free = UInt32(try Volume.readHeader(device).layout.totalBlocks - 3)
        try FieldRewriter(device: device).rewrite(.fileDescriptor(slot: thick), field: Self.directEntry(0), to: free)
        let volume = try Volume.mount(device: device, options: hostOptions("user"))
        defer { try? volume.unmount() }
        let handle = try volume.open("thick", access: .readWrite)
        defer { try? handle.close() }
        for attempt in [{ _ = try handle.read(count: 4096, at: 0) }, { try handle.write(bytes: [1, 2, 3], at: 0) }] as [() throws -> Void] {
            do {
                try attempt()
                Issue.record("a block the bitmap marks free was used")
            } catch let error as VMFSError {
                #expect(error.code == .corrupt && error.message.contains("marks free") && error.message.contains("\(free)"), "\(error)")
            }
        }
    }

    /// Reads, punches, truncates and the inspector meet the same check.
    @Test func everyPathRefusesAnEntryOutsideTheVolume() throws {
        let (device, _, thick) = try volumeWithVictim()
        let attacker = try FieldRewriter(device: device)
        let bad = UInt32(try Volume.readHeader(device).layout.totalBlocks + 5)
        try attacker.rewrite(.fileDescriptor(slot: thick), field: Self.directEntry(1), to: bad)  // written, out of range
        let volume = try Volume.mount(device: device, options: hostOptions("user"))
        defer { try? volume.unmount() }
        let handle = try volume.open("thick", access: .readWrite)
        defer { try? handle.close() }
        func refusal(_ body: () throws -> Void) -> VMFSError.Code? {
            do { try body(); return nil } catch { return (error as? VMFSError)?.code }
        }
        #expect(refusal { _ = try handle.read(count: 4096, at: 1 << 20) } == .corrupt)
        #expect(refusal { _ = try handle.nextData(from: 0) } == .corrupt)
        #expect(refusal { try handle.punchHole(offset: 1 << 20, length: 1 << 20) } == .corrupt)
        #expect(refusal { try handle.truncate(to: 0) } == .corrupt)
        let inspector = try VolumeInspector(device: device.readOnlyView())
        #expect(refusal { _ = try inspector.contents(of: "thick", limit: 2 << 20) } == .corrupt)
    }
}
