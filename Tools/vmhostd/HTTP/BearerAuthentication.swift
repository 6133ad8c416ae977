import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HostAgent
import HostAgentAPI

/// Refuses requests to the TCP listener without a configured bearer token (401 with a JSON error).
/// Tokens are compared as SHA-256 digests in constant time.
struct BearerAuthentication<Context: RequestContext>: RouterMiddleware {
    let digests: [[UInt8]]

    init(tokens: [String]) {
        digests = tokens.map { Array(SHA256.hash(data: Data($0.utf8))) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            let presented = Array(SHA256.hash(data: Data(header.dropFirst(7).utf8)))
            var accepted = false
            for digest in digests {
                // Constant time: every byte of every digest is compared.
                var difference: UInt8 = 0
                for (a, b) in zip(digest, presented) { difference |= a ^ b }
                if difference == 0 { accepted = true }
            }
            if accepted { return try await next(request, context) }
        }
        let error = AgentError(.invalidArgument, request.headers[.authorization] == nil
            ? "this listener needs 'Authorization: Bearer TOKEN'" : "the bearer token is not accepted")
        var body = Components.Schemas.ErrorResponse(error: Conversions.error(error))
        body.error.code = .unauthorized
        let data = (try? JSONEncoder().encode(body)) ?? Data()
        return Response(status: .unauthorized,
                        headers: [.contentType: "application/json", .wwwAuthenticate: "Bearer realm=\"vmhostd\""],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
