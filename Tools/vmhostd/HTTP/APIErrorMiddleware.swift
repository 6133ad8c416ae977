import Foundation
import HTTPTypes
import HostAgent
import HostAgentAPI
import OpenAPIRuntime

/// Turns every error of an operation into a JSON error response (`ErrorResponse` in the spec):
/// the agent's own errors by their code, request decoding failures as 400 naming the field.
/// Nothing a client sends can produce a 5xx here; only an operation failing on the host can.
struct APIErrorMiddleware: ServerMiddleware {
    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?))
        async throws -> (HTTPResponse, HTTPBody?) {
        do {
            return try await next(request, body, metadata)
        } catch {
            let agentError = Self.agentError(from: error, operationID: operationID)
            return Self.response(for: agentError)
        }
    }

    static func status(of code: AgentError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidArgument: .badRequest
        case .notFound: .notFound
        case .alreadyExists, .busy, .invalidState: .conflict
        case .storageUnavailable: .serviceUnavailable
        case .forbidden: .forbidden
        case .failed: .internalServerError
        }
    }

    static func response(for error: AgentError) -> (HTTPResponse, HTTPBody?) {
        let body = Components.Schemas.ErrorResponse(error: Conversions.error(error))
        let data = (try? JSONEncoder().encode(body)) ?? Data()
        return (HTTPResponse(status: status(of: error.code), headerFields: [.contentType: "application/json"]), HTTPBody(data))
    }

    /// The agent error behind `error`: the handler's own, or a description of what in the request
    /// could not be decoded.
    static func agentError(from error: any Error, operationID: String) -> AgentError {
        var current: any Error = error
        for _ in 0..<4 {
            if let agentError = current as? AgentError { return agentError }
            if let serverError = current as? ServerError {
                current = serverError.underlyingError
                continue
            }
            break
        }
        if let decoding = current as? DecodingError { return AgentError(.invalidArgument, describe(decoding), field: path(decoding)) }
        if let runtime = current as? (any HTTPResponseConvertible), (400..<500).contains(runtime.httpStatus.code) {
            return AgentError(.invalidArgument, "\(operationID): \(current)")
        }
        if current is CancellationError { return AgentError(.failed, "\(operationID) was cancelled") }
        // Anything else from decoding the request is still the request's fault.
        if let serverError = error as? ServerError, serverError.httpStatus.code < 500 || serverError.causeDescription.contains("decod") {
            return AgentError(.invalidArgument, "\(operationID): \(serverError.causeDescription): \(current)")
        }
        return AgentError(.failed, "\(operationID) failed: \(current)")
    }

    private static func path(_ error: DecodingError) -> String? {
        let context: DecodingError.Context? = switch error {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): c
        case .keyNotFound(let key, let c): DecodingError.Context(codingPath: c.codingPath + [key], debugDescription: c.debugDescription)
        @unknown default: nil
        }
        guard let context, !context.codingPath.isEmpty else { return nil }
        return context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            let place = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            return "the request body lacks '\(place)'"
        case .typeMismatch(let type, let context):
            return "'\(path(error) ?? "body")' is not a valid \(type): \(context.debugDescription)"
        case .valueNotFound(_, let context):
            return "'\(path(error) ?? "body")' is null: \(context.debugDescription)"
        case .dataCorrupted(let context):
            return "the request body is not valid\(path(error).map { " at '\($0)'" } ?? ""): \(context.debugDescription)"
        @unknown default:
            return "the request body is not valid: \(error)"
        }
    }
}
