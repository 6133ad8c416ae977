public import Foundation
public import HostAgentAPI
internal import AsyncHTTPClient
internal import HTTPTypes
internal import NIOCore
internal import NIOSSL
internal import OpenAPIAsyncHTTPClient
internal import Synchronization
public import OpenAPIRuntime

/// Where a host agent listens.
public enum AgentEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// The local API socket (root only).
    case unixSocket(String)
    /// The remote API: HTTPS with a bearer token. `trustedCertificate` is a PEM file to trust
    /// (the agent's self-signed certificate); `insecure` skips verification altogether.
    case https(host: String, port: Int, token: String?, trustedCertificate: String?, insecure: Bool)

    public var description: String {
        switch self {
        case .unixSocket(let path): "unix:\(path)"
        case .https(let host, let port, _, _, _): "https://\(host):\(port)"
        }
    }

    /// The local agent: `/run/vmhostd/HOST/hostd.sock` for `hostID`, else the one agent socket
    /// under `/run/vmhostd` (the environment's `VMHOSTD_SOCKET` overrides both).
    public static func local(hostID: String? = nil) throws(AgentClientError) -> AgentEndpoint {
        if let path = ProcessInfo.processInfo.environment["VMHOSTD_SOCKET"], !path.isEmpty { return .unixSocket(path) }
        if let hostID { return .unixSocket("/run/vmhostd/\(hostID)/hostd.sock") }
        let candidates = ((try? FileManager.default.contentsOfDirectory(atPath: "/run/vmhostd")) ?? [])
            .map { "/run/vmhostd/\($0)/hostd.sock" }.filter { FileManager.default.fileExists(atPath: $0) }.sorted()
        guard let only = candidates.first else {
            throw AgentClientError("no host agent runs on this machine (no /run/vmhostd/*/hostd.sock); start vmhostd or name one with --host")
        }
        guard candidates.count == 1 else {
            throw AgentClientError("\(candidates.count) host agents run on this machine (\(candidates.joined(separator: ", "))): name one with --host-id or --host")
        }
        return .unixSocket(only)
    }

    /// Parses `--host`: a Unix socket path, `unix:PATH`, or `https://HOST[:PORT]`.
    public static func parse(_ text: String, token: String?, trustedCertificate: String?, insecure: Bool) throws(AgentClientError) -> AgentEndpoint {
        if text.hasPrefix("/") { return .unixSocket(text) }
        if text.hasPrefix("unix:") { return .unixSocket(String(text.dropFirst(5))) }
        guard let url = URL(string: text.contains("://") ? text : "https://\(text)"), url.scheme == "https", let host = url.host, !host.isEmpty else {
            throw AgentClientError("'\(text)' is not a socket path or https://HOST[:PORT]")
        }
        return .https(host: host, port: url.port ?? 8443, token: token, trustedCertificate: trustedCertificate, insecure: insecure)
    }
}

/// A connection-failure or refusal, in words a person can act on.
public struct AgentClientError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// The HTTP status of a refusal, when the agent answered.
    public var status: Int?

    public init(_ description: String, status: Int? = nil) {
        self.description = description
        self.status = status
    }
}

/// A client of one host agent (the generated OpenAPI client over AsyncHTTPClient).
public final class AgentConnection: Sendable {
    public let endpoint: AgentEndpoint
    public let client: Client
    private let http: HTTPClient
    private let closed = Atomic<Bool>(false)

    public init(_ endpoint: AgentEndpoint) throws(AgentClientError) {
        self.endpoint = endpoint
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(600))
        let serverURL: URL
        var middlewares: [any ClientMiddleware] = [ErrorResponses()]
        switch endpoint {
        case .unixSocket(let path):
            guard let url = URL(httpURLWithSocketPath: path) else { throw AgentClientError("bad socket path \(path)") }
            serverURL = url
        case .https(let host, let port, let token, let trusted, let insecure):
            var tls = TLSConfiguration.makeClientConfiguration()
            if insecure {
                tls.certificateVerification = .none
            } else if let trusted {
                do { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(trusted)) } catch {
                    throw AgentClientError("cannot read the trusted certificate \(trusted): \(error)")
                }
                tls.certificateVerification = .noHostnameVerification
            }
            configuration.tlsConfiguration = tls
            guard let url = URL(string: "https://\(host.contains(":") ? "[\(host)]" : host):\(port)") else {
                throw AgentClientError("bad host \(host)")
            }
            serverURL = url
            if let token { middlewares.append(BearerToken(token: token)) }
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        // Times carry milliseconds (failover timelines, events): RFC 3339 with fractional seconds.
        client = Client(serverURL: serverURL, configuration: .init(dateTranscoder: .iso8601WithFractionalSeconds),
                        transport: AsyncHTTPClientTransport(configuration: .init(client: http, timeout: .seconds(600))),
                        middlewares: middlewares)
    }

    /// Closes the connection pool.
    public func shutdown() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? await http.shutdown()
    }

    deinit { if !closed.load(ordering: .acquiring) { try? http.syncShutdown() } }
}

/// Adds `Authorization: Bearer TOKEN` to every request.
struct BearerToken: ClientMiddleware {
    let token: String

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.authorization] = "Bearer \(token)"
        return try await next(request, body, baseURL)
    }
}

/// Turns every non-success response into an ``AgentClientError`` carrying the agent's message
/// (the `ErrorResponse` body), so callers handle only success.
struct ErrorResponses: ClientMiddleware {
    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, responseBody) = try await next(request, body, baseURL)
        guard response.status.kind == .clientError || response.status.kind == .serverError else { return (response, responseBody) }
        var text = ""
        if let responseBody, let data = try? await Data(collecting: responseBody, upTo: 1 << 20) {
            if let decoded = try? JSONDecoder().decode(Components.Schemas.ErrorResponse.self, from: data) {
                text = decoded.error.message
                if let field = decoded.error.field { text += " (\(field))" }
            } else {
                text = String(decoding: data, as: UTF8.self)
            }
        }
        throw AgentClientError(text.isEmpty ? "the agent answered \(response.status)" : text, status: response.status.code)
    }
}
