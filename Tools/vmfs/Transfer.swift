import ArgumentParser
import VMFSCore
import VMFSToolSupport

/// Copies a local file or block device onto the volume (import), leaving runs of zeros out so
/// the copy stays sparse. The copy is written under a temporary name and renamed into place
/// when complete: a failure leaves nothing behind, and `--force` replaces the old file atomically.
struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a local file or block device onto the volume.",
        discussion: """
            Regular files are read to their end (files in /proc and /sys too); a block device's whole \
            contents are copied. Directories, FIFOs, sockets and character devices are refused.
            """)

    @OptionGroup var host: HostIdentityOptions
    @Flag(help: "Preallocate the whole file (thick, lazily zeroed) instead of thin.") var thick = false
    @Flag(help: "Replace NAME if it exists (atomically, once the copy is complete).") var force = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "Local file or block device to copy.") var local: String
    @Argument(help: "Name on the volume.") var name: String

    func run() async throws {
        let source: LocalSource
        do { source = try LocalSource(path: local) } catch { throw ToolOutput.failure("vmfs put", error) }
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs put", { client, datastore in
            try await AgentRouting.put(source, as: name, thick: thick, replace: force, client: client, datastore: datastore)
        }) { return }
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            try StagedFile.create(name, on: volume, attributes: source.attributes, replace: force) { handle in
                let size = try source.copyData { offset, bytes in try handle.write(bytes, at: offset) }
                if handle.size != size { try handle.truncate(to: size) }
                if thick && size > 0 { try handle.allocate(offset: 0, length: size) }
            }
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs put", error)
        }
    }
}

/// Copies a file from the volume to a local file (export): only the file's data extents are
/// read, holes stay holes, and the local file is replaced only once the copy is complete.
struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a file from the volume to a local file.",
        discussion: """
            The copy is written to a new file next to LOCAL and renamed over it when complete: a \
            symlink at LOCAL is replaced (never followed), and a failed copy leaves LOCAL as it was. \
            A directory or special file at LOCAL is refused.
            """)

    @OptionGroup var host: HostIdentityOptions
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "Name on the volume.") var name: String
    @Argument(help: "Local file to write.") var local: String

    func run() async throws {
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs get", { client, datastore in
            try await AgentRouting.get(name, to: local, client: client, datastore: datastore)
        }) { return }
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions(readOnly: true))
            defer { try? volume.unmount() }
            let handle = try volume.open(name, access: .readOnly)
            defer { try? handle.close() }
            let status = try handle.status()
            let destination = try LocalDestination(path: local)
            try destination.setSize(status.size)
            let statistics = try volume.statistics()
            let copy = ExtentCopy(handle: handle, name: name, volumeBytes: statistics.totalBlocks * UInt64(statistics.blockSize))
            try copy.run { offset, bytes in
                try destination.write(bytes, at: offset)
            }
            try destination.commit(mode: status.mode)
            try handle.close()
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs get", error)
        }
    }
}
