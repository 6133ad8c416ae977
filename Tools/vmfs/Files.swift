import ArgumentParser
import VMFSCore
import VMFSToolSupport
import HostAgentAPI
import HostAgentClient

struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a file (fails while another host has it open).")

    @OptionGroup var host: HostIdentityOptions
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "Names to remove.") var names: [String]

    func run() async throws {
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs rm", { client, datastore in
            for name in names { _ = try await client.deleteFile(path: .init(volume: datastore, file: name)).noContent }
        }) { return }
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            for name in names { try volume.remove(name) }
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs rm", error)
        }
    }
}

struct Move: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mv", abstract: "Rename a file atomically.")

    @OptionGroup var host: HostIdentityOptions
    @Flag(name: .customLong("no-replace"), help: "Fail if TARGET exists.") var noReplace = false
    @Flag(help: "Swap SOURCE and TARGET.") var exchange = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument var source: String
    @Argument var target: String

    func run() async throws {
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs mv", { client, datastore in
            _ = try await client.renameFile(path: .init(volume: datastore, file: source),
                                            body: .json(.init(target: target, mode: exchange ? .exchange : (noReplace ? .noReplace : .replace)))).ok
        }) { return }
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            try volume.rename(source, to: target, mode: exchange ? .exchange : (noReplace ? .noReplace : .replace))
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs mv", error)
        }
    }
}

struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a file of a given size, thin (sparse) or thick.")

    @OptionGroup var host: HostIdentityOptions
    @Option(help: "Size, e.g. 20G.") var size: String = "0"
    @Flag(help: "Preallocate (lazily zeroed thick).") var thick = false
    @Flag(name: .customLong("eager-zero"), help: "Preallocate and zero now (eager-zeroed thick; needed for multi-writer).")
    var eagerZero = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument var name: String

    func run() async throws {
        guard let bytes = parseSize(size) else { throw ValidationError("--size '\(size)' is not a size") }
        if eagerZero, try await AgentRouting.run(device: device, host: host, tool: "vmfs create", { _, _ in
            throw AgentClientError("--eager-zero is not offered through the host agent; create the file thick instead")
        }) { return }
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs create", { client, datastore in
            _ = try await client.createFile(path: .init(volume: datastore),
                                            body: .json(.init(name: name, size: Int64(clamping: bytes), thick: thick))).created
        }) { return }
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            // Sized under a temporary name: a size the volume refuses leaves no empty file behind.
            try StagedFile.create(name, on: volume, replace: false) { handle in
                guard bytes > 0 else { return }
                if thick || eagerZero { try handle.allocate(offset: 0, length: bytes, eagerZero: eagerZero) } else { try handle.truncate(to: bytes) }
            }
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs create", error)
        }
    }
}
