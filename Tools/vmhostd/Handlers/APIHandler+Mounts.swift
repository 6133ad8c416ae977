import Foundation
import HostAgent
import HostAgentAPI
import OpenAPIRuntime

extension APIHandler {
    func listMounts(_ input: Operations.ListMounts.Input) async throws -> Operations.ListMounts.Output {
        let name = input.path.volume
        let points = try await blocking { [agent] () throws(AgentError) in
            _ = try agent.datastore(named: name)
            return agent.mountPoints(of: name)
        }
        return .ok(.init(body: .json(points.map { .init(mountPoint: $0) })))
    }

    func createMount(_ input: Operations.CreateMount.Input) async throws -> Operations.CreateMount.Output {
        let name = input.path.volume
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        try await blocking { [agent] () throws(AgentError) in
            try agent.mount(name, at: request.mountPoint, options: request.options ?? [])
        }
        return .created(.init(body: .json(request)))
    }

    func deleteMount(_ input: Operations.DeleteMount.Input) async throws -> Operations.DeleteMount.Output {
        let name = input.path.volume
        let point = input.query.mountPoint
        try await blocking { [agent] () throws(AgentError) in try agent.unmount(name, at: point) }
        return .noContent(.init())
    }
}
