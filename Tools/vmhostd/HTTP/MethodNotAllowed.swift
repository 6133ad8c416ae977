import HTTPTypes
import Hummingbird

/// Answers 405 with an `Allow` header (instead of the router's 404) when the path is one of the
/// API's but the method is not one it takes.
struct MethodNotAllowed<Context: RequestContext>: RouterMiddleware {
    /// The API's paths (templates as in the spec) and their methods. `APIRoutesTests` checks this
    /// table against `openapi.yaml`.
    static var routes: [(template: String, methods: [HTTPRequest.Method])] {
        [
            ("/v1/host", [.get]), ("/v1/host/stats", [.get]), ("/v1/volumes", [.get]), ("/v1/volumes/{volume}", [.get]),
            ("/v1/volumes/{volume}/hosts", [.get]), ("/v1/volumes/{volume}/locks", [.get]),
            ("/v1/volumes/{volume}/recover", [.post]), ("/v1/volumes/{volume}/break-lock", [.post]),
            ("/v1/volumes/{volume}/mounts", [.get, .post, .delete]), ("/v1/volumes/{volume}/files", [.get, .post]),
            ("/v1/volumes/{volume}/files/{file}", [.get, .put, .delete]), ("/v1/volumes/{volume}/files/{file}/status", [.get]),
            ("/v1/volumes/{volume}/files/{file}/rename", [.post]), ("/v1/vms", [.get, .post]), ("/v1/vms/register", [.post]),
            ("/v1/vms/{vm}", [.get, .delete]), ("/v1/vms/{vm}/power-on", [.post]), ("/v1/vms/{vm}/power-off", [.post]),
            ("/v1/vms/{vm}/reset", [.post]), ("/v1/vms/{vm}/stats", [.get]), ("/v1/vms/{vm}/console", [.get, .post]),
            ("/v1/ha", [.get, .put]), ("/v1/vms/{vm}/ha", [.put]), ("/v1/host/maintenance/enter", [.post]),
            ("/v1/host/maintenance/exit", [.post]),
            ("/v1/vms/{vm}/migrate", [.post]), ("/v1/vms/{vm}/migration", [.get]), ("/v1/vms/{vm}/migration/cancel", [.post]),
            ("/v1/migrations/incoming", [.post]), ("/v1/migrations/incoming/{migration}/commit", [.post]),
            ("/v1/migrations/incoming/{migration}/abort", [.post]),
            ("/v1/tasks", [.get]), ("/v1/tasks/{task}", [.get]), ("/v1/events", [.get]), ("/metrics", [.get]),
            ("/v1/vms/{vm}/nics", [.get]), ("/v1/vms/{vm}/announce", [.post]), ("/v1/network/vswitches", [.get, .post]),
            ("/v1/network/vswitches/{vswitch}", [.get, .delete]), ("/v1/network/portgroups", [.get, .post]),
            ("/v1/network/portgroups/{portgroup}", [.get, .put, .delete]), ("/v1/network/check", [.post]),
        ]
    }

    static func matches(_ template: String, _ path: Substring) -> Bool {
        let expected = template.split(separator: "/", omittingEmptySubsequences: false)
        let actual = path.split(separator: "/", omittingEmptySubsequences: false)
        guard expected.count == actual.count else { return false }
        return zip(expected, actual).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
    }

    /// The methods `path` takes, or nil when it is not an API path.
    static func methods(for path: Substring) -> [HTTPRequest.Method]? {
        let candidates = routes.filter { matches($0.template, path) }
        guard !candidates.isEmpty else { return nil }
        var names: Set<String> = []
        for candidate in candidates { for method in candidate.methods { names.insert(method.rawValue) } }
        return names.sorted().compactMap { HTTPRequest.Method($0) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path.split(separator: "?").first ?? ""
        if let methods = Self.methods(for: path), !methods.contains(request.method), request.method != .head {
            return Response(status: .methodNotAllowed, headers: [.allow: methods.map(\.rawValue).joined(separator: ", ")])
        }
        return try await next(request, context)
    }
}
