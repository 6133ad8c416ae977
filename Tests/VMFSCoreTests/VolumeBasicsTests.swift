import Testing
@testable import VMFSCore

@Suite("Volume operations on an in-memory device")
struct VolumeBasicsTests {
    @Test func createWriteReadRemount() throws {
        let device = try makeMemoryVolume()
        do {
            let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
            let handle = try volume.create("disk.vmdk", access: .readWrite)
            let data = pattern(3 << 20, seed: 1)
            try handle.write(bytes: data, at: 12345)
            #expect(try handle.read(count: data.count, at: 12345) == data)
            #expect(try handle.read(count: 100, at: 0) == [UInt8](repeating: 0, count: 100))
            try handle.close()
            #expect(try volume.status(of: "disk.vmdk").size == 12345 + UInt64(data.count))
            try volume.unmount()
        }
        let volume = try Volume.mount(device: device, options: hostOptions("host-b"))
        defer { try? volume.unmount() }
        let handle = try volume.open("disk.vmdk")
        #expect(try handle.read(count: 3 << 20, at: 12345) == pattern(3 << 20, seed: 1))
        #expect(try volume.list().map(\.name) == ["disk.vmdk"])
    }

    @Test func smallFilesStayInline() throws {
        let device = try makeMemoryVolume()
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        defer { try? volume.unmount() }
        let handle = try volume.create("vm.vmx", access: .readWrite)
        try handle.write(bytes: Array("displayName = \"vm\"\n".utf8), at: 0)
        try handle.close()
        let status = try volume.status(of: "vm.vmx")
        #expect(status.isInline)
        #expect(status.allocatedBytes == 0)
        // Growing past the inline capacity moves the data into a block without changing it.
        let grow = try volume.open("vm.vmx", access: .readWrite)
        try grow.write(bytes: pattern(5000, seed: 3), at: 10)
        let expected = Array("displayName = \"vm\"\n".utf8).prefix(10) + pattern(5000, seed: 3)
        #expect(try grow.read(count: 5010, at: 0) == Array(expected))
        try grow.close()
        #expect(try volume.status(of: "vm.vmx").isInline == false)
    }

    @Test func truncatePunchAndAllocate() throws {
        let device = try makeMemoryVolume()
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        defer { try? volume.unmount() }
        let handle = try volume.create("f", access: .readWrite)
        let data = pattern(5 << 20, seed: 9)
        try handle.write(bytes: data, at: 0)
        try handle.sync()
        let before = try volume.statistics().freeBlocks
        try handle.punchHole(offset: 1 << 20, length: 2 << 20)
        var expected = data
        for i in (1 << 20)..<(3 << 20) { expected[i] = 0 }
        #expect(try handle.read(count: data.count, at: 0) == expected)
        try handle.sync()
        #expect(try volume.statistics().freeBlocks == before + 2)
        try handle.truncate(to: 100)
        try handle.truncate(to: 4 << 20)
        var grown = Array(expected.prefix(100))
        grown += [UInt8](repeating: 0, count: (4 << 20) - 100)
        #expect(try handle.read(count: 4 << 20, at: 0) == grown)
        try handle.allocate(offset: 0, length: 10 << 20)
        #expect(try handle.status().size == 10 << 20)
        #expect(try handle.read(count: 1 << 20, at: 8 << 20) == [UInt8](repeating: 0, count: 1 << 20))
        try handle.write(bytes: [1, 2, 3], at: (9 << 20) + 7)
        #expect(try handle.read(count: 5, at: (9 << 20) + 6) == [0, 1, 2, 3, 0])
        try handle.close()
    }

    @Test func namesAndLimits() throws {
        let device = try makeMemoryVolume()
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        defer { try? volume.unmount() }
        #expect(throws: VMFSError.self) { try volume.create("a/b") }
        #expect(throws: VMFSError.self) { try volume.create(String(repeating: "x", count: 128)) }
        #expect(throws: VMFSError.self) { try volume.create("") }
        try volume.create(String(repeating: "é", count: 63))  // 126 bytes of UTF-8
        do {
            try volume.makeDirectory("dir")
            Issue.record("creating a directory must fail")
        } catch {
            #expect(error.code == .permissionDenied)
        }
        for i in 1..<255 { try volume.create("file-\(i)") }
        do {
            try volume.create("one-too-many")
            Issue.record("the 256th file must fail")
        } catch {
            #expect(error.code == .tooManyFiles)
            #expect(error.errno == 28)
            #expect(error.message.contains("maximum of 255 files"))
        }
        #expect(try volume.list().count == 255)
        try volume.remove("file-7")
        try volume.create("replacement")
        try volume.rename("replacement", to: "file-8")
        #expect(try volume.list().count == 254)
        #expect(throws: VMFSError.self) { try volume.rename("file-9", to: "file-10", mode: .noReplace) }
        try volume.rename("file-9", to: "file-10", mode: .exchange)
    }
}

extension VMFSError {
    var errno: Int32 { code.errno }
}

@Suite("Space reuse")
struct SpaceReuseTests {
    /// Blocks freed and not yet committed must not be handed out again, but a writer that needs
    /// them gets them after a commit instead of waiting or failing.
    @Test func freedBlocksAreReusedAfterTheFreeingTransactionCommits() throws {
        let device = try makeMemoryVolume(size: 256 << 20)
        let volume = try Volume.mount(device: device, options: hostOptions("reuse"))
        defer { try? volume.unmount() }
        let free = try volume.statistics().freeBlocks
        let handle = try volume.create("big", access: .readWrite)
        let everything = Int(free) << 20
        try handle.write(bytes: [UInt8](repeating: 7, count: everything), at: 0)
        try handle.sync()
        do {
            try handle.write(bytes: [1], at: UInt64(everything) + (1 << 20))
            Issue.record("the volume must be full")
        } catch {
            #expect(error.code == .noSpace)
        }
        try handle.punchHole(offset: 0, length: UInt64(everything))
        // No commit yet: the writer must wait for none and must get the freed blocks.
        try handle.write(bytes: [UInt8](repeating: 9, count: 4 << 20), at: 0)
        #expect(try handle.read(count: 4, at: (4 << 20) - 2) == [9, 9, 0, 0])
        try handle.close()
        var check = CheckOptions()
        check.force = true
        try volume.unmount()
        #expect(VolumeChecker(device: device.readOnlyView(), options: check).run().exitCode == 0)
    }
}
