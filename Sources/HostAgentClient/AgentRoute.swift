public import VMFSCore
internal import FoundationEssentials

/// Where a command of this host sends its work when the host agent holds the volume: the agent's
/// local socket and the volume's datastore name, found in the note the agent left in the volume's
/// local host lock (`/run/vmfs/VOLUME-HOST.lock`).
public struct AgentRoute: Sendable, Equatable {
    public var endpoint: AgentEndpoint
    public var datastore: String

    private struct Note: Decodable {
        var agentSocket: String
        var datastore: String
    }

    /// The route for the volume on `device` as host `host`, or nil when no agent of this machine
    /// holds it (the command then uses the volume itself).
    public static func forVolume(device path: String, host: HostIdentity) -> AgentRoute? {
        guard let device = try? DeviceOpener.open(path, readOnly: true, directIO: false),
              let text = Volume.localHolderNote(device: device, host: host),
              let note = try? JSONDecoder().decode(Note.self, from: Data(text.utf8)) else { return nil }
        return AgentRoute(endpoint: .unixSocket(note.agentSocket), datastore: note.datastore)
    }
}
