public import LiveMigration
internal import FoundationEssentials

/// One message of the control protocol; the frame type numbers are in `docs/VMX-PROTOCOL.md`.
public enum ControlMessage: Sendable, Equatable {
    // Agent → VMM.
    case hello(HelloRequest)
    case configure(VMSpecification)
    case start
    case powerOff
    case reset
    case lease(LeaseGrant)
    case consoleInput([UInt8])
    case attachDisks(DiskAttachment)
    case statusRequest
    case pause(PauseRequest)
    case resume
    case migrateOut(MigrateOutRequest)
    case migrationHandoff(MigrationHandoff)
    case migrationCancel
    case configureIncoming(IncomingSpecification)
    case migrateIn(MigrateInRequest)
    /// Announce every NIC's address on the host network now (the VM resumed on this host).
    case announceNetwork
    case setLink(LinkRequest)
    // VMM → agent.
    case helloReply(HelloReply)
    case configured
    case error(ErrorReply)
    case stateChanged(StateChange)
    case consoleOutput([UInt8])
    case status(StatusReport)
    case marker(MarkerReport)
    case guestHeartbeat(GuestHeartbeat)
    case migrationProgress(MigrationProgress)
    case migrationReady(MigrationReadyReport)
    case migrationEnded(MigrationEndReport)
    case networkEvent(NetworkEventReport)

    /// The frame type of this message.
    public var type: UInt16 {
        switch self {
        case .hello: 0x0001
        case .configure: 0x0002
        case .start: 0x0003
        case .powerOff: 0x0004
        case .reset: 0x0005
        case .lease: 0x0006
        case .consoleInput: 0x0007
        case .attachDisks: 0x0008
        case .statusRequest: 0x0009
        case .pause: 0x000A
        case .resume: 0x000B
        case .migrateOut: 0x000C
        case .migrationHandoff: 0x000D
        case .migrationCancel: 0x000E
        case .configureIncoming: 0x000F
        case .migrateIn: 0x0010
        case .announceNetwork: 0x0020
        case .setLink: 0x0021
        case .helloReply: 0x0101
        case .configured: 0x0102
        case .error: 0x0103
        case .stateChanged: 0x0104
        case .consoleOutput: 0x0105
        case .status: 0x0106
        case .marker: 0x0107
        case .guestHeartbeat: 0x0108
        case .migrationProgress: 0x0109
        case .migrationReady: 0x010A
        case .migrationEnded: 0x010B
        case .networkEvent: 0x0120
        }
    }

    /// The payload bytes: JSON for structured messages, raw bytes for console data, none otherwise.
    func payload() throws(VMXProtocolError) -> [UInt8] {
        do {
            switch self {
            case .hello(let value): return try Self.json(value)
            case .configure(let value): return try Self.json(value)
            case .lease(let value): return try Self.json(value)
            case .attachDisks(let value): return try Self.json(value)
            case .pause(let value): return try Self.json(value)
            case .helloReply(let value): return try Self.json(value)
            case .error(let value): return try Self.json(value)
            case .stateChanged(let value): return try Self.json(value)
            case .status(let value): return try Self.json(value)
            case .marker(let value): return try Self.json(value)
            case .guestHeartbeat(let value): return try Self.json(value)
            case .migrateOut(let value): return try Self.json(value)
            case .migrationHandoff(let value): return try Self.json(value)
            case .configureIncoming(let value): return try Self.json(value)
            case .migrateIn(let value): return try Self.json(value)
            case .migrationProgress(let value): return try Self.json(value)
            case .migrationReady(let value): return try Self.json(value)
            case .migrationEnded(let value): return try Self.json(value)
            case .setLink(let value): return try Self.json(value)
            case .networkEvent(let value): return try Self.json(value)
            case .consoleInput(let bytes), .consoleOutput(let bytes): return bytes
            case .start, .powerOff, .reset, .statusRequest, .resume, .configured, .announceNetwork, .migrationCancel: return []
            }
        } catch {
            throw VMXProtocolError(.malformed, "cannot encode \(self.type): \(error)")
        }
    }

    private static func json<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try JSONEncoder().encode(value))
    }

    private static func decodeJSON<T: Decodable>(_ type: T.Type, _ payload: ArraySlice<UInt8>, name: String) throws(VMXProtocolError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(payload))
        } catch {
            throw VMXProtocolError(.malformed, "\(name) payload is not valid: \(error)")
        }
    }

    /// Decodes a message of frame type `type` from its payload.
    ///
    /// - Throws: ``VMXProtocolError/Code/malformed`` naming the message for an unknown type, a
    ///   payload that should be empty but is not, or JSON that does not match the message.
    public static func decode(type: UInt16, payload: ArraySlice<UInt8>) throws(VMXProtocolError) -> ControlMessage {
        func empty(_ message: ControlMessage, _ name: String) throws(VMXProtocolError) -> ControlMessage {
            guard payload.isEmpty else { throw VMXProtocolError(.malformed, "\(name) carries \(payload.count) unexpected payload bytes") }
            return message
        }
        switch type {
        case 0x0001: return .hello(try decodeJSON(HelloRequest.self, payload, name: "hello"))
        case 0x0002: return .configure(try decodeJSON(VMSpecification.self, payload, name: "configure"))
        case 0x0003: return try empty(.start, "start")
        case 0x0004: return try empty(.powerOff, "powerOff")
        case 0x0005: return try empty(.reset, "reset")
        case 0x0006: return .lease(try decodeJSON(LeaseGrant.self, payload, name: "lease"))
        case 0x0007: return .consoleInput(Array(payload))
        case 0x0008: return .attachDisks(try decodeJSON(DiskAttachment.self, payload, name: "attachDisks"))
        case 0x0009: return try empty(.statusRequest, "statusRequest")
        case 0x000A: return .pause(try decodeJSON(PauseRequest.self, payload, name: "pause"))
        case 0x000B: return try empty(.resume, "resume")
        case 0x000C: return .migrateOut(try decodeJSON(MigrateOutRequest.self, payload, name: "migrateOut"))
        case 0x000D: return .migrationHandoff(try decodeJSON(MigrationHandoff.self, payload, name: "migrationHandoff"))
        case 0x000E: return try empty(.migrationCancel, "migrationCancel")
        case 0x000F: return .configureIncoming(try decodeJSON(IncomingSpecification.self, payload, name: "configureIncoming"))
        case 0x0010: return .migrateIn(try decodeJSON(MigrateInRequest.self, payload, name: "migrateIn"))
        case 0x0020: return try empty(.announceNetwork, "announceNetwork")
        case 0x0021: return .setLink(try decodeJSON(LinkRequest.self, payload, name: "setLink"))
        case 0x0101: return .helloReply(try decodeJSON(HelloReply.self, payload, name: "helloReply"))
        case 0x0102: return try empty(.configured, "configured")
        case 0x0103: return .error(try decodeJSON(ErrorReply.self, payload, name: "error"))
        case 0x0104: return .stateChanged(try decodeJSON(StateChange.self, payload, name: "stateChanged"))
        case 0x0105: return .consoleOutput(Array(payload))
        case 0x0106: return .status(try decodeJSON(StatusReport.self, payload, name: "status"))
        case 0x0107: return .marker(try decodeJSON(MarkerReport.self, payload, name: "marker"))
        case 0x0108: return .guestHeartbeat(try decodeJSON(GuestHeartbeat.self, payload, name: "guestHeartbeat"))
        case 0x0109: return .migrationProgress(try decodeJSON(MigrationProgress.self, payload, name: "migrationProgress"))
        case 0x010A: return .migrationReady(try decodeJSON(MigrationReadyReport.self, payload, name: "migrationReady"))
        case 0x010B: return .migrationEnded(try decodeJSON(MigrationEndReport.self, payload, name: "migrationEnded"))
        case 0x0120: return .networkEvent(try decodeJSON(NetworkEventReport.self, payload, name: "networkEvent"))
        default: throw VMXProtocolError(.malformed, "unknown control message type 0x\(String(type, radix: 16))")
        }
    }
}
