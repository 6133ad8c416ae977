import Testing
@testable import VMFSCore

@Suite("Repairs keep hosts out")
struct MaintenanceTests {
    private let repairer = HostIdentity.local(override: "fsck-test")

    @Test func mountIsRefusedWhileARepairHoldsTheVolume() throws {
        let device = try makeMemoryVolume()
        let claim = try MaintenanceClaim.acquire(device: device, header: try Volume.readHeader(device), identity: repairer)
        do {
            let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
            try? volume.unmount()
            Issue.record("a host mounted the volume while it was being repaired")
        } catch {
            #expect(error.code == .busy)
            #expect(error.message.contains("being repaired") && error.message.contains("slot \(claim.slot)"), "\(error)")
        }
        // The refused mount left no slot behind: only the repair's slot is taken.
        let inspector = try VolumeInspector(device: device.readOnlyView())
        #expect(try inspector.hosts(observeMilliseconds: 0).filter { $0.state != "free" }.map(\.state) == ["maintenance"])
        try claim.release()
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        try volume.unmount()
    }

    @Test func anInterruptedRepairKeepsHostsOutUntilFsckRunsAgain() throws {
        let device = try makeMemoryVolume()
        let claim = try MaintenanceClaim.acquire(device: device, header: try Volume.readHeader(device), identity: repairer)
        try claim.markRepairing()
        claim.abandon()  // as if fsck.vmfs -y were killed while writing repairs
        #expect(throws: VMFSError.self) { try Volume.mount(device: device, options: hostOptions("host-a")) }

        var check = CheckOptions()
        check.observeMilliseconds = 300
        let found = VolumeChecker(device: device.readOnlyView(), options: check).run()
        #expect(found.exitCode == 4)
        #expect(found.problems.contains { $0.message.contains("repair") && $0.message.contains("interrupted") }, "\(found.problems)")

        check.repair = true
        #expect(VolumeChecker(device: device, options: check).run().exitCode == 1)
        check.repair = false
        #expect(VolumeChecker(device: device.readOnlyView(), options: check).run().exitCode == 0)
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        try volume.unmount()
    }

    /// A check killed before it wrote anything left the volume as it was: hosts clear its slot
    /// once it has been silent for its dead interval, and mount.
    @Test func aCheckKilledBeforeWritingIsClearedByHosts() throws {
        let device = try makeMemoryVolume()
        let claim = try MaintenanceClaim.acquire(device: device, header: try Volume.readHeader(device), identity: repairer)
        claim.abandon()  // as if fsck.vmfs -y were killed while watching heartbeats
        let started = Clock.monotonicNanoseconds
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        #expect(Clock.monotonicNanoseconds - started >= 1_000_000_000, "hosts wait the repair's dead interval (1 s) first")
        try volume.unmount()
        let inspector = try VolumeInspector(device: device.readOnlyView())
        #expect(try inspector.hosts(observeMilliseconds: 0).allSatisfy { $0.state == "free" })
    }

    /// A live check keeps refusing hosts at once, and one that a host cleared while it was
    /// stopped may not start writing.
    @Test func aCheckThatWasClearedWhileStoppedWritesNothing() throws {
        let device = try makeMemoryVolume()
        let claim = try MaintenanceClaim.acquire(device: device, header: try Volume.readHeader(device), identity: repairer)
        #expect(throws: VMFSError.self) { try Volume.mount(device: device, options: hostOptions("host-a")) }
        claim.abandon()  // stopped (SIGSTOP) rather than killed
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        defer { try? volume.unmount() }
        #expect { try claim.markRepairing() } throws: { ($0 as? VMFSError)?.code == .fenced }
    }

    @Test func aRepairFreesItsSlotAndRefusesLiveHosts() throws {
        let device = try makeMemoryVolume()
        var repair = CheckOptions()
        repair.repair = true
        repair.observeMilliseconds = 300
        #expect(VolumeChecker(device: device, options: repair).run().exitCode == 0)
        let inspector = try VolumeInspector(device: device.readOnlyView())
        #expect(try inspector.hosts(observeMilliseconds: 0).allSatisfy { $0.state == "free" })

        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        defer { try? volume.unmount() }
        let refused = VolumeChecker(device: device, options: repair).run()
        #expect(refused.exitCode == 8)
        #expect(refused.operationalError?.contains("live hosts") == true, "\(String(describing: refused.operationalError))")
        // The refused repair gave its own slot back.
        #expect(try inspector.hosts(observeMilliseconds: 0).filter { $0.state != "free" }.map(\.state) == ["live"])
    }
}
