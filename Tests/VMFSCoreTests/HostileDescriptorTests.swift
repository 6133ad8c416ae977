import Testing
import VMFSTestSupport
@testable import VMFSCore

/// Descriptor fields outside their documented range (size, counts) are refused when a host
/// reads them, never used in arithmetic that could trap; `fsck.vmfs` flags and repairs them.
@Suite("Hostile descriptor fields")
struct HostileDescriptorTests {
    /// A volume with `small` (inline) and `big` (two written blocks, one reached through a
    /// pointer block); returns the device and the slots.
    private func volume() throws -> (MemoryBlockDevice, small: Int, big: Int) {
        let device = try makeMemoryVolume()
        let volume = try Volume.mount(device: device, options: hostOptions("maker"))
        let small = try volume.create("small", access: .readWrite)
        try small.write(bytes: Array("hello".utf8), at: 0)
        let big = try volume.create("big", access: .readWrite)
        try big.write(bytes: pattern(1 << 20, seed: 3), at: 0)
        try big.write(bytes: pattern(4096, seed: 4), at: 1000 << 20)
        let slots = (small.slot, big.slot)
        try small.close()
        try big.close()
        try volume.unmount()
        return (device, slots.0, slots.1)
    }

    private func check(_ device: MemoryBlockDevice, repair: Bool) -> CheckReport {
        var options = CheckOptions()
        options.repair = repair
        options.force = true
        return VolumeChecker(device: repair ? device : device.readOnlyView(), options: options).run()
    }

    /// Every way a host reads the file refuses it with a corrupt error naming the field.
    /// The other files stay listed and readable.
    private func expectRefused(_ device: MemoryBlockDevice, _ name: String, field: String, healthy: String? = nil) throws {
        let volume = try Volume.mount(device: device, options: hostOptions("user"))
        defer { try? volume.unmount() }
        for attempt in [{ _ = try volume.status(of: name) }, { _ = try volume.open(name) },
                        { _ = try volume.open(name, access: .readWrite) }] as [() throws -> Void] {
            do {
                try attempt()
                Issue.record("\(name) with a hostile \(field) was accepted")
            } catch let error as VMFSError {
                #expect(error.code == .corrupt && error.message.contains(field), "\(error)")
            }
        }
        if let healthy {
            #expect(try volume.list().map(\.name) == [healthy])
            #expect(try volume.open(healthy).read(count: 10, at: 0).count > 0)
        }
    }

    @Test(arguments: [UInt64(1) << 63, UInt64.max - 4, FormatConstants.maxFileSize + 1])
    func aSizeAboveTheMaximumIsRefusedAndRepaired(size: UInt64) throws {
        let (device, _, big) = try volume()
        try FieldRewriter(device: device).rewrite(.fileDescriptor(slot: big), field: 56, to: size)
        try expectRefused(device, "big", field: "size \(size)", healthy: "small")
        let found = check(device, repair: false)
        #expect(found.exitCode == 4)
        #expect(found.problems.contains { $0.message.contains("size \(size)") }, "\(found.problems)")
        #expect(check(device, repair: true).exitCode == 1)
        #expect(check(device, repair: false).exitCode == 0)
        // The repair keeps every mapped block: the size ends with the last one.
        let volume = try Volume.mount(device: device, options: hostOptions("after"))
        defer { try? volume.unmount() }
        let handle = try volume.open("big")
        #expect(handle.size == 1001 << 20)
        #expect(try handle.read(count: 1 << 20, at: 0) == pattern(1 << 20, seed: 3))
        #expect(try handle.read(count: 4096, at: 1000 << 20) == pattern(4096, seed: 4))
        #expect(try handle.nextHole(from: 0) == 1 << 20)
        #expect(try handle.nextData(from: 1 << 20) == 1000 << 20)
    }

    @Test(arguments: [(64, "data block count"), (72, "pointer block count")])
    func hugeCountsAreRefusedAndRepaired(field: Int, name: String) throws {
        let (device, small, big) = try volume()
        let attacker = try FieldRewriter(device: device)
        for slot in [small, big] { try attacker.rewrite(.fileDescriptor(slot: slot), field: field, to: UInt64.max) }
        try expectRefused(device, "small", field: name)
        try expectRefused(device, "big", field: name)
        let found = check(device, repair: false)
        #expect(found.exitCode == 4)
        #expect(found.problems.contains { $0.structure == "file descriptor \(small)" && $0.message.contains("inline") }, "\(found.problems)")
        #expect(found.problems.contains { $0.structure == "file descriptor \(big)" }, "\(found.problems)")
        #expect(check(device, repair: true).exitCode == 1)
        #expect(check(device, repair: false).exitCode == 0)
        let volume = try Volume.mount(device: device, options: hostOptions("after"))
        defer { try? volume.unmount() }
        #expect(try volume.status(of: "small").allocatedBytes == 0)
        #expect(try volume.status(of: "big").allocatedBytes == (2 << 20) + 4096)
    }

    /// Counts an inline file cannot have, but inside the range a host accepts: only fsck sees them.
    @Test func fsckFlagsBlockCountsOfAnInlineFile() throws {
        let (device, small, _) = try volume()
        try FieldRewriter(device: device).rewrite(.fileDescriptor(slot: small), field: 64, to: UInt64(12))
        let found = check(device, repair: false)
        #expect(found.exitCode == 4)
        #expect(found.problems.contains { $0.structure == "file descriptor \(small)" && $0.message.contains("12 data") }, "\(found.problems)")
        #expect(check(device, repair: true).exitCode == 1)
        #expect(check(device, repair: false).exitCode == 0)
    }
}
