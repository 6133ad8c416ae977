import Foundation
import HTTPTypes
import HostAgent
import OpenAPIRuntime

/// Refuses JSON request bodies that give a member the value `null` (400 naming the member).
///
/// No schema of the API is nullable: an optional member is left out, never `null`. The generated
/// decoding reads `null` as "left out", which would accept requests the spec calls invalid (and a
/// client that meant something by `null` would see it ignored), so it is refused here first.
struct JSONNullRejection: ServerMiddleware {
    /// The largest JSON body looked at (the API's JSON bodies are small; larger ones are refused).
    static let maximumBytes = 4 << 20

    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?))
        async throws -> (HTTPResponse, HTTPBody?) {
        guard let body, request.headerFields[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            return try await next(request, body, metadata)
        }
        let data: Data
        do { data = try await Data(collecting: body, upTo: Self.maximumBytes) } catch {
            throw AgentError(.invalidArgument, "\(operationID): the JSON body is larger than \(Self.maximumBytes) bytes")
        }
        if let value = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]), let path = Self.firstNull(in: value, at: "") {
            throw AgentError(.invalidArgument, "\(operationID): '\(path.isEmpty ? "body" : path)' is null; leave an optional member out instead",
                             field: path.isEmpty ? nil : path)
        }
        return try await next(request, HTTPBody(data), metadata)
    }

    /// The path (`a.b[2].c`) of the first `null` in a decoded JSON value, or nil when there is none.
    static func firstNull(in value: Any, at path: String) -> String? {
        if value is NSNull { return path }
        if let object = value as? [String: Any] {
            for key in object.keys.sorted() {
                if let found = firstNull(in: object[key] as Any, at: path.isEmpty ? key : "\(path).\(key)") { return found }
            }
        } else if let array = value as? [Any] {
            for (index, element) in array.enumerated() {
                if let found = firstNull(in: element, at: "\(path)[\(index)]") { return found }
            }
        }
        return nil
    }
}
