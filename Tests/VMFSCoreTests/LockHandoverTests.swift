import Foundation
import Testing
@testable import VMFSCore

/// Handing a VM's file locks from one host to another (live migration) in one atomic step.
@Suite("Lock handover between hosts")
struct LockHandoverTests {
    static let files = ["vm.vmx", "vm-flat.vmdk", "vm.log"]

    /// Three hosts on one volume; A has the files open read-write, each with some data.
    static func setUp() throws -> (device: MemoryBlockDevice, a: Volume, b: Volume, c: Volume, handles: [VMFSCore.FileHandle]) {
        let device = try makeMemoryVolume()
        let a = try Volume.mount(device: device, options: hostOptions("host-a"))
        let b = try Volume.mount(device: device, options: hostOptions("host-b"))
        let c = try Volume.mount(device: device, options: hostOptions("host-c"))
        var handles: [VMFSCore.FileHandle] = []
        for (index, name) in files.enumerated() {
            let handle = try a.create(name, access: .readWrite)
            try handle.write(bytes: pattern(70_000, seed: UInt64(index)), at: 0)
            handles.append(handle)
        }
        return (device, a, b, c, handles)
    }

    static func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    @Test func aCommittedHandoverGivesEveryFileToTheTakerAndNoThirdHostCanTakeThemOnTheWay() throws {
        let (_, a, b, c, handles) = try Self.setUp()
        defer { for volume in [c, b, a] { try? volume.unmount() } }
        let taker = try #require(b.lockIdentity)
        let handover = try a.prepareLockHandover(handles, to: taker)
        #expect(handover.locks.count == 3 && handover.primaryLock == handover.locks[0])

        // In the handover both hosts hold every lock: C cannot take any, nor can B open them yet.
        for name in Self.files {
            #expect(throws: VMFSError.self) { try c.open(name, access: .readWrite) }
            #expect(throws: VMFSError.self) { try b.open(name, access: .readWrite) }
        }
        // The one atomic step.
        #expect(try b.commitLockHandover(handover) == .committed)
        // The giver cannot take them back any more, and learns it lost.
        #expect(try a.abortLockHandover(handover) == .committed)
        for handle in handles { try handle.close() }  // closing on the giver releases nothing of the taker's

        for (index, name) in Self.files.enumerated() {
            let handle = try b.open(name, access: .readWrite)
            #expect(try handle.read(count: 70_000, at: 0) == pattern(70_000, seed: UInt64(index)), "\(name) lost data in the handover")
            try handle.write(bytes: [1, 2, 3], at: 0)
            #expect(throws: VMFSError.self) { try c.open(name, access: .readWrite) }
            try handle.close()
        }
        // Once B let go, the files are free for anyone.
        let later = try c.open(Self.files[0], access: .readWrite)
        try later.close()
    }

    @Test func whoeverDecidesFirstWinsAndTheOtherIsTold() throws {
        let (_, a, b, c, handles) = try Self.setUp()
        defer { for volume in [c, b, a] { try? volume.unmount() } }
        let handover = try a.prepareLockHandover(handles, to: try #require(b.lockIdentity))
        #expect(try a.abortLockHandover(handover) == .aborted)
        #expect(try b.commitLockHandover(handover) == .aborted)
        // The giver goes on writing its files; nobody else can open them.
        for handle in handles { try handle.write(bytes: [9], at: 1) }
        for name in Self.files {
            #expect(throws: VMFSError.self) { try b.open(name, access: .readWrite) }
            #expect(throws: VMFSError.self) { try c.open(name, access: .readWrite) }
        }
        for handle in handles { try handle.close() }
    }

    /// The giver dies after preparing: once it is recovered (journal replayed), the taker alone
    /// holds the records and can still commit — the giver never writes again.
    @Test func aDeadGiverLeavesTheLocksToTheTaker() throws {
        let (device, a, b, c, handles) = try Self.setUp()
        defer { for volume in [c, b] { try? volume.unmount() } }
        let handover = try a.prepareLockHandover(handles, to: try #require(b.lockIdentity))
        try a.handOver()  // stops its heartbeat without releasing anything: a crash, as seen from the disk
        // The survivors recover A after the dead interval: A's entries leave every record, B stays.
        #expect(Self.waitUntil { Self.holders(of: handover.primaryLock, device) == 1 })
        for name in Self.files { #expect(throws: VMFSError.self) { try c.open(name, access: .readWrite) } }
        #expect(try b.commitLockHandover(handover) == .committed)
        for name in Self.files {
            let handle = try b.open(name, access: .readWrite)
            try handle.close()
        }
    }

    /// The taker dies before committing: the giver's abort wins and it keeps the files.
    @Test func aDeadTakerLeavesTheLocksToTheGiver() throws {
        let (device, a, b, c, handles) = try Self.setUp()
        defer { for volume in [c, a] { try? volume.unmount() } }
        let handover = try a.prepareLockHandover(handles, to: try #require(b.lockIdentity))
        try b.handOver()
        #expect(Self.waitUntil { Self.holders(of: handover.primaryLock, device) == 1 })
        for name in Self.files { #expect(throws: VMFSError.self) { try c.open(name, access: .readWrite) } }
        #expect(try a.abortLockHandover(handover) == .aborted)
        for handle in handles { try handle.write(bytes: [7], at: 2) }
        for name in Self.files { #expect(throws: VMFSError.self) { try c.open(name, access: .readWrite) } }
        for handle in handles { try handle.close() }
    }

    /// How many hosts lock record `index` names.
    static func holders(of index: Int, _ device: MemoryBlockDevice) -> Int {
        ((try? VolumeInspector(device: device).locks()) ?? []).first { $0.index == index }?.holders.count ?? -1
    }

    /// Only the holder of the locks can hand them over, and a handover record decodes (and
    /// checks clean) while it is in progress.
    @Test func onlyTheHolderCanPrepareAndAPendingHandoverIsNotCorruption() throws {
        let (device, a, b, c, handles) = try Self.setUp()
        defer { for volume in [c, b, a] { try? volume.unmount() } }
        // B holds a file of its own, but only for reading: a shared lock is not B's to hand over.
        try b.create("b.iso", access: .readWrite).close()
        let readOnly = try b.open("b.iso", access: .readOnly)
        #expect(throws: VMFSError.self) { _ = try b.prepareLockHandover([readOnly], to: try #require(c.lockIdentity)) }
        try readOnly.close()
        let handover = try a.prepareLockHandover(handles, to: try #require(b.lockIdentity))
        let inspector = try VolumeInspector(device: device)
        let locks = try inspector.locks()
        let held = locks.filter { [handover.primaryLock].contains($0.index) }
        #expect(held.first?.holders.count == 2, "\(held)")
        #expect(try b.commitLockHandover(handover) == .committed)
        for handle in handles { try handle.close() }
    }
}
