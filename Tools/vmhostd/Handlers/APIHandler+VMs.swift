import Foundation
import HostAgent
import HostAgentAPI
import NIOPosix
import OpenAPIRuntime

extension APIHandler {
    func listVMs(_ input: Operations.ListVMs.Input) async throws -> Operations.ListVMs.Output {
        let vms = try await blocking { [agent] in agent.vmSummaries.map(Conversions.summary) }
        return .ok(.init(body: .json(vms)))
    }

    func createVM(_ input: Operations.CreateVM.Input) async throws -> Operations.CreateVM.Output {
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let boot: VMCreateRequest.Boot
        switch request.boot._type {
        case .testGuest:
            guard let image = request.boot.image else { throw AgentError(.invalidArgument, "boot.image is required for a test guest", field: "boot.image") }
            guard let workload = request.boot.workload else {
                throw AgentError(.invalidArgument, "boot.workload is required for a test guest", field: "boot.workload")
            }
            var arguments: [UInt64] = []
            for (index, value) in (request.boot.arguments ?? []).enumerated() {
                arguments.append(try Validation.nonNegative(value, field: "boot.arguments[\(index)]") ?? 0)
            }
            boot = .testGuest(image: image, workload: workload, arguments: arguments)
        case .linux:
            if let commandLine = request.boot.commandLine, commandLine.utf8.count > 4096 {
                throw AgentError(.invalidArgument, "boot.commandLine is \(commandLine.utf8.count) bytes; at most 4096", field: "boot.commandLine")
            }
            guard let kernel = request.boot.kernel else { throw AgentError(.invalidArgument, "boot.kernel is required for Linux", field: "boot.kernel") }
            boot = .linux(kernel: kernel, initrd: request.boot.initrd, commandLine: request.boot.commandLine)
        }
        var diskBytes: [UInt64] = []
        for (index, size) in request.diskBytes.enumerated() {
            diskBytes.append(try Validation.nonNegative(size, field: "diskBytes[\(index)]") ?? 0)
        }
        let memoryBytes = try Validation.nonNegative(request.memoryBytes, field: "memoryBytes") ?? 0
        let create = VMCreateRequest(datastore: request.volume, name: request.name, vcpuCount: request.vcpus,
                                     memoryBytes: memoryBytes, diskBytes: diskBytes,
                                     thick: request.thick ?? false, boot: boot, networks: request.networks ?? [])
        let task = try await blocking { [agent] () throws(AgentError) in try agent.create(create) }
        return .accepted(.init(body: .json(Conversions.task(task))))
    }

    func registerVM(_ input: Operations.RegisterVM.Input) async throws -> Operations.RegisterVM.Output {
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let vm = try await blocking { [agent] () throws(AgentError) in
            try agent.register(datastore: request.volume, vm: request.name).summary
        }
        return .created(.init(body: .json(Conversions.summary(vm))))
    }

    func getVM(_ input: Operations.GetVM.Input) async throws -> Operations.GetVM.Output {
        let reference = input.path.vm
        let detail = try await blocking { [agent] () throws(AgentError) in try agent.lookup(reference).detail }
        return .ok(.init(body: .json(Conversions.detail(detail))))
    }

    func unregisterVM(_ input: Operations.UnregisterVM.Input) async throws -> Operations.UnregisterVM.Output {
        let reference = input.path.vm
        let delete = input.query.deleteFiles ?? false
        try await blocking { [agent] () throws(AgentError) in try agent.unregister(reference, deleteFiles: delete) }
        return .noContent(.init())
    }

    func powerOnVM(_ input: Operations.PowerOnVM.Input) async throws -> Operations.PowerOnVM.Output {
        let reference = input.path.vm
        let task = try await blocking { [agent] () throws(AgentError) in try agent.powerOn(reference) }
        return .accepted(.init(body: .json(Conversions.task(task))))
    }

    func powerOffVM(_ input: Operations.PowerOffVM.Input) async throws -> Operations.PowerOffVM.Output {
        let reference = input.path.vm
        let task = try await blocking { [agent] () throws(AgentError) in try agent.powerOff(reference) }
        return .accepted(.init(body: .json(Conversions.task(task))))
    }

    func resetVM(_ input: Operations.ResetVM.Input) async throws -> Operations.ResetVM.Output {
        let reference = input.path.vm
        let task = try await blocking { [agent] () throws(AgentError) in try agent.reset(reference) }
        return .accepted(.init(body: .json(Conversions.task(task))))
    }

    func getVMStatistics(_ input: Operations.GetVMStatistics.Input) async throws -> Operations.GetVMStatistics.Output {
        let reference = input.path.vm
        let statistics = try await blocking { [agent] () throws(AgentError) in try agent.lookup(reference).statistics }
        return .ok(.init(body: .json(.init(
            id: statistics.uuid, powerState: .init(rawValue: statistics.power.rawValue) ?? .crashed,
            uptimeSeconds: Double(statistics.uptimeNanoseconds) / 1e9, cpuSeconds: Double(statistics.cpuNanoseconds) / 1e9,
            residentBytes: Int64(clamping: statistics.residentBytes), disks: statistics.disks.map(Conversions.disk)))))
    }

    /// The console: what is kept in memory, then (with follow) new output as it comes, until the
    /// VM stops or the client goes away.
    func readConsole(_ input: Operations.ReadConsole.Input) async throws -> Operations.ReadConsole.Output {
        let reference = input.path.vm
        let vm = try await blocking { [agent] () throws(AgentError) in try agent.lookup(reference) }
        let follow = input.query.follow ?? false
        let since = try Validation.nonNegative(input.query.since, field: "since") ?? 0
        guard let console = vm.console else {
            if follow { throw AgentError(.invalidState, "VM '\(vm.name)' has not run since the agent started", field: "vm") }
            return .ok(.init(body: .binary(HTTPBody())))
        }
        if !follow {
            return .ok(.init(body: .binary(HTTPBody(console.read(after: since).bytes))))
        }
        let (pool, shutdown) = (blockingPool, shutdown)
        let stream = AsyncThrowingStream<ArraySlice<UInt8>, any Error> { continuation in
            let follower = Task {
                var position = since
                while !Task.isCancelled && !shutdown.isStopping {
                    let at = position
                    let next = try? await pool.runIfActive { () -> ConsoleChunk? in
                        console.wait(after: at, timeoutNanoseconds: 250_000_000).map { ConsoleChunk(bytes: $0.bytes, position: $0.position) }
                    }
                    guard let chunk = next else { break }
                    position = chunk.position
                    if !chunk.bytes.isEmpty { continuation.yield(chunk.bytes[...]) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in follower.cancel() }
        }
        return .ok(.init(body: .binary(HTTPBody(stream, length: .unknown, iterationBehavior: .single))))
    }

    func writeConsole(_ input: Operations.WriteConsole.Input) async throws -> Operations.WriteConsole.Output {
        let reference = input.path.vm
        guard case .binary(let body) = input.body else { throw AgentError(.invalidArgument, "expected an octet-stream body") }
        let bytes: [UInt8]
        do { bytes = try await [UInt8](collecting: body, upTo: 64 << 10) } catch {
            throw AgentError(.invalidArgument, "console input is limited to 64 KiB per request", field: "body")
        }
        guard !bytes.isEmpty else { throw AgentError(.invalidArgument, "the request body is empty: nothing to type", field: "body") }
        try await blocking { [agent] () throws(AgentError) in try agent.lookup(reference).type(bytes) }
        return .noContent(.init())
    }
}

/// Console output and the position after it.
struct ConsoleChunk: Sendable {
    var bytes: [UInt8]
    var position: UInt64
}
