import Foundation
import Testing
@testable import Hypervisor

@Suite("Console sinks and memory options (no KVM needed)")
struct ConsoleAndMemoryOptionTests {
    @Test func fileAndTeeConsolesReceiveTheSameBytes() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("vm.log")
        let file = try FileConsole(path: path, truncate: true)
        let capture = CapturingConsole()
        let tee = TeeConsole([file, capture])
        tee.write(Array("first line\n".utf8))
        tee.write(Array("second\r\n".utf8))
        tee.flush()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "first line\nsecond\r\n")
        #expect(capture.lines == ["first line", "second", ""])
        // Appends unless asked to truncate.
        try FileConsole(path: path).write(Array("third\n".utf8))
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasSuffix("second\r\nthird\n"))
        #expect(throws: HypervisorError.self) { try FileConsole(path: directory.path("missing/dir/vm.log")) }
    }

    @Test func capturingConsoleWaitTimesOut() {
        let console = CapturingConsole()
        #expect(!console.wait(timeout: 0.05) { $0.contains("never") })
        console.write(Array("ready".utf8))
        #expect(console.wait(timeout: 0.05) { $0.contains("ready") })
    }

    /// The VmFlags of the /proc/self/smaps entry (VMA) that contains `address`.
    func mappingFlags(at address: UnsafeMutableRawPointer) throws -> [Substring] {
        let target = UInt(bitPattern: address)
        // Read to the end: /proc files report size 0, and a size-based read stops early.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps"))
        defer { try? handle.close() }
        let lines = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self).split(separator: "\n")
        var inside = false
        for line in lines {
            let fields = line.split(separator: " ")
            if let range = fields.first, range.contains("-"), !line.hasSuffix(":"), fields.count >= 5 {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && target >= bounds[0] && target < bounds[1]
            } else if inside, line.hasPrefix("VmFlags:") {
                return line.split(separator: " ")
            }
        }
        throw HypervisorError(.guestMemory, "no mapping contains 0x\(String(target, radix: 16))")
    }

    @Test func mergeableMemoryIsMarkedForKSM() throws {
        let shared = try GuestMemory(size: 8 << 20, mergeable: true)
        let plain = try GuestMemory(size: 8 << 20, mergeable: false)
        #expect(try mappingFlags(at: shared.base).contains("mg"))
        #expect(try !mappingFlags(at: plain.base).contains("mg"))
        #expect(try mappingFlags(at: plain.base).contains("nr"))  // MAP_NORESERVE
        // Nothing is resident until touched.
        #expect(plain.residentBytes == 0)
        try plain.store(UInt8(1), at: 4096 * 10)
        #expect(plain.residentBytes == 4096)
    }
}
