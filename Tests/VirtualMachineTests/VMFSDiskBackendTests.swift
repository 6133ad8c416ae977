import Foundation
import Testing
@testable import VMFSCore
import VMManagement
import VMFSTestSupport

@Suite("A VM disk on VMFS")
struct VMFSDiskBackendTests {
    /// WRITE_ZEROES reads back zeros either way; with UNMAP the blocks go back to the volume.
    @Test func writeZeroesKeepsOrFreesBlocksAsTheGuestAsks() throws {
        let image = try VolumeImage(size: "1G")
        let volume = try image.mount("zeroes")
        defer { try? volume.unmount() }
        let handle = try volume.create("disk-flat.vmdk", access: .readWrite)
        try handle.write(bytes: [UInt8](repeating: 0x6B, count: 4 << 20), at: 0)
        let disk = VMFSDiskBackend(handle: handle, identifier: "disk")
        try disk.writeZeroes(offset: 0, length: 2 << 20, deallocating: false)
        #expect(try handle.status().allocatedBytes == 4 << 20, "without UNMAP the blocks stay allocated")
        try disk.writeZeroes(offset: 2 << 20, length: 2 << 20, deallocating: true)
        #expect(try handle.status().allocatedBytes == 2 << 20, "with UNMAP the blocks are freed")
        #expect(try handle.read(count: 4 << 20, at: 0) == [UInt8](repeating: 0, count: 4 << 20))
        try handle.close()
    }
}
