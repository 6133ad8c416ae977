// vmfs-fuse: mounts a VMFS volume through FUSE (libfuse3 low-level API). See docs/FUSE.md.
// When this host's agent (vmhostd) holds the volume, the agent mounts it: it is the host's only
// member of the volume, and serves the mount from its own membership.
import Glibc
import HostAgentAPI
import HostAgentClient
import VMFSCore
import VMFSFuse

let arguments = Array(CommandLine.arguments.dropFirst())
if let request = VMFSFuseCommand.mountRequest(arguments: arguments) {
    let identity = HostIdentity.local(override: request.hostID ?? getenv("VMFS_HOST_ID").map { String(cString: $0) })
    if let route = AgentRoute.forVolume(device: request.device, host: identity) {
        let options = VMFSFuseCommand.passThroughOptions(arguments: arguments)
        do {
            let connection = try AgentConnection(route.endpoint)
            _ = try await connection.client.createMount(path: .init(volume: route.datastore),
                                                       body: .json(.init(mountPoint: request.mountpoint, options: options))).created
            await connection.shutdown()
            print("vmfs-fuse: the host agent (\(route.endpoint)) mounted volume '\(route.datastore)' on \(request.mountpoint)")
            exit(0)
        } catch {
            let text = "vmfs-fuse: error: the host agent holds this volume and could not mount it: \(error)\n"
            var bytes = Array(text.utf8)
            _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
            exit(1)
        }
    }
}
exit(VMFSFuseCommand.run(arguments: arguments))
