import Synchronization
import Testing
import VMFSTestSupport
@testable import VMFSCore

/// Write errors for a memory device's data area, once armed (after a number of successful writes).
final class WriteFailures: Sendable {
    private let budget = Mutex<Int?>(nil)

    /// Lets `count` more data writes succeed, then fails every one; `nil` heals the device.
    func failDataWrites(after count: Int?) { budget.withLock { $0 = count } }

    /// `base`, failing writes and zeroing at or past `dataOffset` as armed.
    func device(over base: MemoryBlockDevice, dataOffset: UInt64) -> WriteHookDevice {
        WriteHookDevice(base) { [self] (change, offset, _) throws(VMFSError) in
            guard change != .discard, offset >= dataOffset else { return }
            let fail = budget.withLock { b -> Bool in
                guard let left = b else { return false }
                if left > 0 { b = left - 1; return false }
                return true
            }
            if fail { throw VMFSError(.io, "injected write error", location: .init(device: base.path, offset: offset)) }
        }
    }
}

@Suite("Device write errors")
struct DeviceFailureTests {
    /// Blocks taken for writes, eager-zeroed preallocations and inline conversions whose data
    /// could not be written go back: nothing leaks, what was mapped before the error stays
    /// consistent, and the volume works normally once the device heals.
    @Test func failedDataWritesLeakNothing() throws {
        let memory = try makeMemoryVolume(size: 512 << 20)
        let failures = WriteFailures()
        let device = failures.device(over: memory, dataOffset: try Volume.readHeader(memory).layout.dataOffset)
        let volume = try Volume.mount(device: device, options: hostOptions("failing"))
        let free = try volume.statistics().freeBlocks
        let handle = try volume.create("disk", access: .readWrite)
        try handle.write(bytes: pattern(1 << 20, seed: 1), at: 0)
        let small = try volume.create("small", access: .readWrite)
        try small.write(bytes: Array("inline".utf8), at: 0)

        failures.failDataWrites(after: 0)
        for i in 1...20 {
            #expect(throws: VMFSError.self) { try handle.write(bytes: pattern(4096, seed: UInt64(i)), at: UInt64(i) << 20) }
        }
        #expect(throws: VMFSError.self) { try small.write(bytes: pattern(8192, seed: 9), at: 0) }  // leaves inline data
        // An eager-zeroed preallocation of 8 blocks that fails at the fourth.
        failures.failDataWrites(after: 3)
        #expect(throws: VMFSError.self) { try handle.allocate(offset: 40 << 20, length: 8 << 20, eagerZero: true) }
        failures.failDataWrites(after: nil)

        #expect(try small.read(count: 6, at: 0) == Array("inline".utf8))
        #expect(try handle.read(count: 1 << 20, at: 0) == pattern(1 << 20, seed: 1))
        // The three blocks zeroed before the error stay mapped (past the end of the file, which
        // the failed call did not grow); nothing else is taken.
        try handle.sync()
        #expect(try volume.statistics().freeBlocks == free - 1 - 3)
        #expect(try handle.status().allocatedBytes >= 4 << 20)
        // Everything else can still be allocated and written.
        try handle.write(bytes: [UInt8](repeating: 5, count: Int(free - 4 - 8) << 20), at: 100 << 20)
        try handle.close()
        try small.close()
        try volume.unmount()
        var check = CheckOptions()
        check.force = true
        let report = VolumeChecker(device: memory.readOnlyView(), options: check).run()
        #expect(report.exitCode == 0, "\(report.problems)")
    }
}
