import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport

/// Names on a volume are bytes anyone with write access chose: printed raw, a newline splits a
/// listing entry and an escape sequence takes over the administrator's terminal.
@Suite("Control characters in names are escaped in human-readable output")
struct OutputEscapingTests {
    @Test func namesWithControlCharactersPrintOnOneLineEscaped() throws {
        let scratch = Scratch("escape")
        let image = scratch.file("lun.img")
        let label = "ds\u{1B}]0;owned\u{07}"
        #expect(try runTool("mkfs.vmfs", ["--size", "1G", "--label", label] + fastMkfsFlags + [image]).status == 0)
        let name = "evil\nvm.vmx\u{1B}[2J\r\\"
        let escaped = #"evil\nvm.vmx\x1b[2J\r\\"#
        var options = MountOptions(host: HostIdentity.local(override: "holder"))
        options.timing = HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 800, ioTimeoutMs: 300)
        let volume = try Volume.mount(path: image, options: options)
        let handle = try volume.create(name, access: .readWrite)
        try handle.write(bytes: [1, 2, 3], at: 0)
        try handle.sync()
        defer {
            try? handle.close()
            try? volume.unmount()
        }
        let short = try runTool("vmfs", ["ls", image])
        #expect(short.stdout == escaped + "\n", "\(short.stdout.debugDescription)")
        let long = try runTool("vmfs", ["ls", "-l", image]).stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(long.count == 3 && long[1].hasSuffix(escaped) && long[2].isEmpty, "\(long)")
        // JSON escapes by itself and keeps the name exact.
        #expect(try runTool("vmfs", ["ls", "--json", image]).stdout.contains(#""name" : "evil\nvm.vmx\u001b[2J\r\\""#))
        // The lock this process holds names the file.
        let locks = try runTool("vmfs", ["locks", image]).stdout
        #expect(locks.contains("file '\(escaped)'"), "\(locks.debugDescription)")
        #expect(!locks.contains("\u{1B}") && !locks.contains("\r"), "\(locks.debugDescription)")
        let info = try runTool("vmfs", ["info", image]).stdout
        #expect(info.contains(#"label:      ds\x1b]0;owned\x07"#), "\(info.debugDescription)")
        // Errors that repeat a name escape it too.
        let missing = try runTool("vmfs", ["get", image, "no\u{1B}[31mfile", scratch.file("out")])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains(#"no\x1b[31mfile"#) && !missing.stderr.contains("\u{1B}"), "\(missing.stderr.debugDescription)")
    }
}
