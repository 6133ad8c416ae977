import Foundation
import Testing
import VMFSTestSupport

/// Every endpoint's responses validate against the committed OpenAPI spec, and malformed
/// requests get 4xx (never 5xx), as schemathesis (from PyPI, installed by Tools/scripts/setup.sh
/// into .cache/venv) sees it against a real agent's TLS listener with a VM running.
let schemathesisPath = repositoryRoot.appendingPathComponent(".cache/venv/bin/schemathesis").path

@Suite("Host agent API against its OpenAPI spec", .serialized,
       .enabled(if: canRunCluster && FileManager.default.isExecutableFile(atPath: schemathesisPath)))
struct APISchemaTests {
    static let schemathesis = schemathesisPath

    @Test func responsesMatchTheSpecAndMalformedRequestsGet4xx() throws {
        let cluster = try TestCluster(hosts: 1)
        try cluster.startAll()
        let h1 = cluster.hosts[0]
        #expect(try h1.vmctl(["create", "--datastore", "ds1", "--name", "web", "--guest", try testGuestImage(), "--workload", "diskSequence",
                              "--args", "1024,1,0,200000", "--disk", "64M", "--memory", "64M"]).status == 0)
        #expect(try h1.vmctl(["power-on", "web"]).status == 0)
        // Followed streams never end by design: schemathesis asks for snapshots.
        let config = cluster.directory.appendingPathComponent("schemathesis.toml").path
        try "[parameters]\n\"query.follow\" = false\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try runSystem(Self.schemathesis, [
            "--config-file", config, "run", repositoryRoot.appendingPathComponent("Sources/HostAgentAPI/openapi.yaml").path,
            "--url", h1.url, "-H", "Authorization: Bearer \(h1.token)", "--tls-verify", "false",
            "--max-examples", "10", "--request-timeout", "20", "--seed", "20261130",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
                + "response_headers_conformance,negative_data_rejection,unsupported_method",
        ], environment: ["NO_COLOR": "1"], timeout: 1200)
        let summary = result.stdout.split(separator: "\n").suffix(40).joined(separator: "\n")
        #expect(result.status == 0, "schemathesis found problems:\n\(summary)\n\(h1.log(lines: 20))")
        #expect(result.stdout.contains("Tested: 38"), "\(summary)")
        #expect(h1.pid != nil, "the agent died under schemathesis: \(h1.log(lines: 40))")
    }
}
