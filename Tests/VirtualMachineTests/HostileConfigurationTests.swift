import Foundation
import Testing
@testable import VMFSCore
import VMManagement
import VMFSTestSupport

/// `.vmx` and `.vmdk` files are written by whoever has access to the datastore: every number in
/// them is checked, and a bad VM gets an error naming its file, key and value, never a crash of
/// `vmctl` (which would leave its heartbeat slot and locks behind) or a silent wrap-around.
@Suite("Hostile VM configurations", .serialized)
struct HostileConfigurationTests {
    /// Replaces the text of `name` on the volume.
    private func rewrite(_ image: VolumeImage, _ name: String, _ change: (String) -> String) throws {
        let volume = try image.mount("editor-\(UUID().uuidString.prefix(4))")
        defer { try? volume.unmount() }
        let handle = try volume.open(name, access: .readWrite)
        let text = change(String(decoding: try handle.read(count: Int(handle.size), at: 0), as: UTF8.self))
        try handle.truncate(to: 0)
        try handle.write(bytes: Array(text.utf8), at: 0)
        try handle.close()
    }

    private func replacing(_ key: String, with value: String) -> (String) -> String {
        { text in
            text.split(separator: "\n").map { $0.lowercased().hasPrefix(key.lowercased() + " ") ? "\(key) = \"\(value)\"" : String($0) }
                .joined(separator: "\n") + "\n"
        }
    }

    private func expectCleanFailure(_ result: ToolResult, mentioning fragments: [String], _ what: String) {
        #expect(result.status == 1, "\(what): status \(result.status): \(result.stderr)")
        #expect(!result.output.contains("Fatal error") && !result.output.contains("Backtrac") && !result.output.contains("Illegal"),
                "\(what) crashed: \(result.output)")
        for fragment in fragments { #expect(result.stderr.contains(fragment), "\(what): '\(fragment)' missing from \(result.stderr)") }
    }

    @Test func badNumbersAreNamedAndDoNotHideTheOtherVMs() throws {
        let image = try VolumeImage(size: "2G")
        let guest = try testGuestImage()
        for name in ["good", "cpus", "memory", "sectors"] {
            let created = try runTool("vmctl", ["create", "--volume", image.path, "--name", name, "--memory", "64M", "--disk", "16M",
                                                "--guest", guest])
            try #require(created.status == 0, "\(created.stderr)")
        }
        try rewrite(image, "cpus.vmx", replacing("numvcpus", with: "18446744073709551615"))
        try rewrite(image, "memory.vmx", replacing("memSize", with: "17592186044480"))  // 2^44 + 64 MiB: wraps to 64 MiB in bytes
        try rewrite(image, "sectors.vmdk") { $0.replacingOccurrences(of: "RW 32768 FLAT", with: "RW 36028797018963968 FLAT") }
        let problems = [("cpus", ["cpus.vmx", "numvcpus", "18446744073709551615"]),
                        ("memory", ["memory.vmx", "memSize", "17592186044480"]),
                        ("sectors", ["sectors.vmdk", "sector count", "36028797018963968"])]
        let list = try runTool("vmctl", ["list", "--volume", image.path])
        #expect(list.status == 0, "\(list.output)")
        let rows = list.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.contains { $0.first == "good" && $0.contains("stopped") }, "\(list.stdout)")
        for (name, fragments) in problems {
            #expect(rows.contains { $0.first == name && $0.contains("invalid") }, "\(name): \(list.stdout)")
            let line = list.stderr.split(separator: "\n").first { $0.contains("'\(name)'") }.map(String.init) ?? ""
            for fragment in fragments { #expect(line.contains(fragment), "list: \(fragment) missing from '\(line)'") }
        }
        let json = try runTool("vmctl", ["list", "--volume", image.path, "--json"])
        #expect(json.status == 0 && json.stdout.contains("\"problem\"") && json.stdout.contains("\"invalid\""), "\(json.output)")
        for (name, fragments) in problems {
            for command in ["run", "show", "rm"] where !(command == "show" && name == "sectors") {
                expectCleanFailure(try runTool("vmctl", [command, "--volume", image.path, name]), mentioning: fragments, "\(command) \(name)")
            }
        }
        #expect(try runTool("vmctl", ["show", "--volume", image.path, "good"]).status == 0)
        // Nothing was left held by the failing runs.
        #expect(try runTool("vmfs", ["locks", image.path]).stdout.split(separator: "\n").count <= 1)
        #expect(try runTool("fsck.vmfs", ["-n", image.path]).status == 0)
    }

    @Test func aHugeBootImageIsRefusedAndReleasesEverything() throws {
        let image = try VolumeImage(size: "2G")
        let guest = try testGuestImage()
        #expect(try runTool("vmctl", ["create", "--volume", image.path, "--name", "big", "--memory", "64M", "--disk", "64G",
                                      "--guest", guest]).status == 0)
        try rewrite(image, "big.vmx", replacing("testguest.image", with: "big-flat.vmdk"))
        for attempt in 1...2 {
            let run = try runTool("vmctl", ["run", "--volume", image.path, "big"], timeout: 120)
            #expect(!run.timedOut)
            expectCleanFailure(run, mentioning: ["boot image 'big-flat.vmdk'", "\(64 << 30) bytes", "at most"], "run \(attempt)")
        }
        let locks = try runTool("vmfs", ["locks", image.path])
        #expect(locks.stdout.split(separator: "\n").count <= 1, "locks left held: \(locks.stdout)")
        let hosts = try runTool("vmfs", ["hosts", "--json", "--observe-ms", "0", image.path])
        #expect(hosts.status == 0 && !hosts.stdout.contains("\"slot\""), "a heartbeat slot was left held: \(hosts.stdout)")
        #expect(try runTool("vmctl", ["rm", "--volume", image.path, "big"]).status == 0)
        #expect(try runTool("vmfs", ["ls", image.path]).stdout == "big.guest\n", "only the image the edited .vmx no longer names stays")
    }

    @Test func aFailingRunExitsWithItsErrorNotASignal() throws {
        let image = try VolumeImage(size: "1G")
        let run = try runTool("vmctl", ["run", "--volume", image.path, "nosuch"])
        expectCleanFailure(run, mentioning: ["no VM named 'nosuch'"], "run of a missing VM")
    }

    @Test func vmxAndVMDKNumbersAreRangeChecked() throws {
        func definition(_ lines: [String]) throws -> VirtualMachineDefinition {
            let base = ["displayName = \"t\"", "numvcpus = \"1\"", "memSize = \"64\"", "boot.type = \"testguest\"",
                        "testguest.image = \"t.guest\"", "testguest.workload = \"hello\""]
            var keyed: [String: String] = [:]
            for line in base + lines { keyed[String(line.prefix { $0 != " " })] = line }
            let text = keyed.values.sorted().joined(separator: "\n")
            return try VirtualMachineDefinition(vmx: try VMXFile(parsing: text, fileName: "t.vmx"), fileName: "t.vmx")
        }
        #expect(try definition([]).memoryBytes == 64 << 20)
        for (line, fragment) in [("numvcpus = \"0\"", "numvcpus"), ("numvcpus = \"255\"", "numvcpus"), ("numvcpus = \"-1\"", "numvcpus"),
                                 ("memSize = \"0\"", "memSize"), ("memSize = \"65\"", "multiple of 2"),
                                 ("memSize = \"17592186044480\"", "memSize"), ("log.sizeLimit = \"100\"", "log.sizeLimit"),
                                 ("testguest.args = \"1,2,3,4,5,6,7,8,9\"", "at most 8"),
                                 ((0...16).map { "disk\($0).fileName = \"d\($0).vmdk\"" }.joined(separator: "\n"), "one disk too many")] {
            #expect { try definition(line.split(separator: "\n").map(String.init)) } throws: { error in
                let message = (error as? VMError)?.message ?? ""
                return message.contains("t.vmx") && message.contains(fragment)
            }
        }
        for (line, fragment) in [("RW 0 FLAT \"x\" 0", "sector count"), ("RW 18014398509481984 FLAT \"x\" 0", "sector count"),
                                 ("RW 99999999999999999999999 FLAT \"x\" 0", "sector count"), ("RW 8 FLAT \"x\" 512", "offset")] {
            #expect { try VMDKDescriptor(parsing: line, fileName: "x.vmdk") } throws: { error in
                let message = (error as? VMError)?.message ?? ""
                return message.contains("x.vmdk") && message.contains(fragment)
            }
        }
        #expect(try VMDKDescriptor(parsing: "RW 18014398509481983 FLAT \"x\" 0", fileName: "x.vmdk").byteCount == 18014398509481983 * 512)
    }

    /// Found by fuzz-vm-files: a descriptor the parser accepted did not read back the same once
    /// written (an extent name holding a quote), and a quoted name with a space was refused as
    /// a bad offset.
    @Test func extentNamesAreQuotedOrSingleWordsWithoutQuotes() throws {
        let spaced = try VMDKDescriptor(parsing: "RW 8 FLAT \"my disk-flat.vmdk\" 0", fileName: "x.vmdk")
        #expect(spaced.extentFileName == "my disk-flat.vmdk")
        #expect(try VMDKDescriptor(parsing: spaced.text, fileName: "x.vmdk") == spaced)
        #expect(try VMDKDescriptor(parsing: "RDONLY 8 FLAT bare-flat.vmdk", fileName: "x.vmdk").extentFileName == "bare-flat.vmdk")
        for line in ["RW 8 FLAT a\"b 0", "RW 8 FLAT \"unterminated 0", "RW 8 FLAT \"\" 0", "RW 8 FLAT \"x\"y\" 0"] {
            #expect(throws: VMError.self, "\(line)") { try VMDKDescriptor(parsing: line, fileName: "x.vmdk") }
        }
    }
}
