import Foundation
import Testing
@testable import VMFSCore
import VMManagement
import VMFSTestSupport

/// A guest decides how much it prints: its console log on the datastore must stay bounded.
@Suite("The console log on the volume stays under its limit")
struct ConsoleLogTests {
    private func line(_ number: Int) -> [UInt8] {
        Array(("line \(number) " + String(repeating: "x", count: 4000) + "\n").utf8)
    }

    /// The numbers of the lines in a log, after its first line (the marker).
    private func lineNumbers(_ text: String) -> [Int] {
        text.split(separator: "\n").dropFirst().compactMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } }
    }

    @Test func aGuestPrintingWithoutEndKeepsTheNewestOutputUnderTheDefaultLimit() throws {
        let image = try VolumeImage(size: "1G")
        let volume = try image.mount("console")
        defer { try? volume.unmount() }
        let log = try volume.create("vm.log", access: .readWrite)
        let console = VolumeLogConsole(handle: log)
        let count = (9 << 20) / line(0).count + 1
        for number in 0..<count { console.write(line(number)) }
        console.flush()
        let size = log.size
        #expect(size <= VirtualMachineDefinition.defaultLogSizeLimit, "the log grew to \(size) bytes")
        let text = String(decoding: try log.read(count: Int(size), at: 0), as: UTF8.self)
        #expect(text.hasPrefix("--- ") && text.split(separator: "\n").first?.contains("dropped") == true, "\(text.prefix(200))")
        let numbers = lineNumbers(text)
        #expect(numbers.last == count - 1, "the newest line must be kept")
        #expect(numbers == Array((count - numbers.count)..<count), "whole lines, in order, without gaps")
        #expect(numbers.count * line(0).count >= Int(VirtualMachineDefinition.defaultLogSizeLimit / 2) - line(0).count)
        try log.close()
    }

    @Test func theLimitComesFromTheVMXAndIsRangeChecked() throws {
        let image = try VolumeImage(size: "1G")
        let guest = try testGuestImage()
        let created = try runTool("vmctl", ["create", "--volume", image.path, "--name", "chatty", "--memory", "64M",
                                            "--guest", guest, "--log-limit", "64K"])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(try image.text(of: "chatty.vmx").contains("log.sizeLimit = \"65536\""))
        let tiny = try runTool("vmctl", ["create", "--volume", image.path, "--name", "tiny", "--memory", "64M",
                                         "--guest", guest, "--log-limit", "100"])
        #expect(tiny.status != 0 && tiny.stderr.contains("100 bytes"), "\(tiny.stderr)")
        let volume = try image.mount("console")
        defer { try? volume.unmount() }
        let definition = try VirtualMachineStore(volume: volume).definition(of: "chatty")
        #expect(definition.logSizeLimit == 64 << 10)
        let log = try volume.open("chatty.log", access: .readWrite)
        let console = VolumeLogConsole(handle: log, sizeLimit: definition.logSizeLimit)
        for number in 0..<100 { console.write(line(number)) }
        console.flush()
        #expect(log.size <= 64 << 10)
        #expect(lineNumbers(String(decoding: try log.read(count: Int(log.size), at: 0), as: UTF8.self)).last == 99)
        try log.close()
    }
}
