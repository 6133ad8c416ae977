import Foundation
import Testing
import VMFSTestSupport

/// The slot-ownership protocol of Session (Tools/model/slot-ownership.pml), checked in every
/// interleaving by spin: the protocol as built holds its invariants, and the one before issue
/// 10 is shown to break them (the model can tell the two apart).
@Suite("Model check of the descriptor-lock ownership protocol")
struct ModelCheckTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Tools/scripts/check-model.sh").path

    static var spinInstalled: Bool {
        ["/usr/bin/spin", "/usr/local/bin/spin"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func everyInterleavingKeepsTheInvariants() throws {
        guard Self.spinInstalled else {
            Issue.record("spin is not installed (Tools/scripts/setup.sh installs it)")
            return
        }
        let result = try runSystem("/bin/bash", [Self.script])
        #expect(result.status == 0 && result.stdout.contains("errors: 0"), "\(result.output)")
    }

    @Test func theProtocolBeforeIssue10LosesTheLockAndTheOrphan() throws {
        guard Self.spinInstalled else {
            Issue.record("spin is not installed (Tools/scripts/setup.sh installs it)")
            return
        }
        let result = try runSystem("/bin/bash", [Self.script, "--before"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stdout.contains("assertion violated"), "\(result.output)")
    }
}
