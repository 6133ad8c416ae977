import ArgumentParser
import FoundationEssentials
import Glibc
import HostAgentAPI
import HostAgentClient
import OpenAPIRuntime
import VMFSCore
import VMFSToolSupport

/// How to reach a host agent: this machine's (by its local socket) or another host's API.
struct AgentOptions: ParsableArguments {
    @Option(name: .customLong("host"),
            help: "The host agent: a socket path, or https://HOST[:PORT]. Default: this machine's agent (/run/vmhostd/*/hostd.sock).")
    var agent: String?

    @Option(help: "Bearer token for https:// hosts (default: $VMHOSTD_TOKEN).")
    var token: String?

    @Option(name: .customLong("ca"), help: "PEM certificate to trust for https:// hosts (the agent's self-signed one).")
    var trustedCertificate: String?

    @Flag(help: "Do not verify the https:// host's certificate.")
    var insecure = false

    @OptionGroup var host: HostIdentityOptions

    func endpoint() throws -> AgentEndpoint {
        guard let agent else { return try AgentEndpoint.local(hostID: host.hostID ?? ProcessInfo.processInfo.environment["VMFS_HOST_ID"]) }
        let token = token ?? ProcessInfo.processInfo.environment["VMHOSTD_TOKEN"]
        return try AgentEndpoint.parse(agent, token: token, trustedCertificate: trustedCertificate, insecure: insecure)
    }

    /// The identity of this host, for finding the agent that holds a volume.
    var identity: HostIdentity { HostIdentity.local(override: host.hostID ?? ProcessInfo.processInfo.environment["VMFS_HOST_ID"]) }
}

/// Runs `body` with a connection to the agent at `endpoint`; failures print as `vmctl: error: …`.
func withAgent<T: Sendable>(_ endpoint: AgentEndpoint, _ body: (Client) async throws -> T) async throws -> T {
    let connection: AgentConnection
    do { connection = try AgentConnection(endpoint) } catch { throw fail(error) }
    do {
        let result = try await body(connection.client)
        await connection.shutdown()
        return result
    } catch let error as ExitCode {
        await connection.shutdown()
        throw error
    } catch {
        await connection.shutdown()
        throw fail(AgentClientError("\(endpoint): \(describe(error))"))
    }
}

/// A readable sentence for a client-side error (the agent's own message when it refused).
func describe(_ error: any Error) -> String {
    if let error = error as? AgentClientError { return error.description }
    if let error = error as? ClientError, let cause = error.underlyingError as? AgentClientError { return cause.description }
    if let error = error as? ClientError { return "\(error.underlyingError)" }
    return "\(error)"
}

/// Waits for `task` to end; throws with its error message when it failed.
func wait(for task: Components.Schemas.Task, client: Client, what: String) async throws -> Components.Schemas.Task {
    var current = task
    while current.state == .queued || current.state == .running {
        current = try await client.getTask(path: .init(task: current.id), query: .init(waitSeconds: 30)).ok.body.json
    }
    if current.state == .error {
        ToolOutput.error("vmctl: \(what) failed: \(current.error?.message ?? "unknown error")".escapingControlCharacters)
        throw ExitCode(1)
    }
    return current
}

/// Copies a local file to the volume through the agent (a replacement is renamed into place whole).
func upload(_ path: String, as name: String, datastore: String, client: Client) async throws {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
    _ = try await client.writeFile(path: .init(volume: datastore, file: name), query: .init(replace: true),
                                   body: .binary(HTTPBody(data))).ok
}

extension Components.Schemas.VMSummary {
    var row: [String] {
        [name.escapingControlCharacters, powerState.rawValue, "\(vcpus)", formatSize(UInt64(max(0, memoryBytes))),
         diskBytes.map { formatSize(UInt64(max(0, $0))) }.joined(separator: ","), volume.escapingControlCharacters,
         vmmPid.map(String.init) ?? "-", id]
    }

    static let header = ["NAME", "STATE", "VCPUS", "MEMORY", "DISKS", "VOLUME", "VMM", "ID"]
}

/// Writes bytes to standard output as they come (console streams).
func writeOut<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
    let array = Array(bytes)
    var offset = 0
    array.withUnsafeBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        while offset < buffer.count {
            let written = write(1, base + offset, buffer.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// `value` with `places` decimals.
func decimal(_ value: Double, places: Int = 2) -> String {
    let scale = (0..<places).reduce(1.0) { value, _ in value * 10 }
    let rounded = (value * scale).rounded() / scale
    var text = "\(rounded)"
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < places { text += String(repeating: "0", count: places - decimals) }
    }
    return text
}
