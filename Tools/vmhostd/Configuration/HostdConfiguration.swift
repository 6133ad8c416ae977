import Foundation
import TOMLKit
import HostAgent
import HostNetworking
import VMFSCore

/// `/etc/vmfs/hostd.toml`: the agent's identity, directories, API listeners and volumes.
/// `Tools/vmhostd/hostd.toml.example` documents every key.
struct HostdConfiguration: Sendable {
    struct Listener: Sendable {
        var host: String
        var port: Int
    }

    var agent: HostAgent.Configuration
    var unixSocket: String
    var listen: Listener?
    var certificatePath: String?
    var privateKeyPath: String?
    /// Bearer tokens accepted on the TCP listener.
    var tokens: [String]
    var powerOffVMsOnStop: Bool
    var mounts: [String: String]

    struct Error: Swift.Error, CustomStringConvertible {
        var description: String
    }

    private struct File: Decodable {
        struct Host: Decodable {
            var id: String?
            var state_directory: String?
            var run_directory: String?
            var vmx: String?
            var orphan_timeout_ms: Int?
            var power_off_vms_on_stop: Bool?
            var disk_window_mib: Int?
        }
        struct API: Decodable {
            var unix_socket: String?
            var listen: String?
            var certificate: String?
            var private_key: String?
            var tokens: [String]?
        }
        struct Volume: Decodable {
            var name: String
            var device: String
            var mount: String?
        }
        struct HA: Decodable {
            var memory_capacity_mib: Int?
        }
        var host: Host?
        var api: API?
        var volume: [Volume]?
        var ha: HA?
    }

    private static let knownKeys: [String: Set<String>] = [
        "": ["host", "api", "volume", "ha", "vswitch", "portgroup"],
        "ha": ["memory_capacity_mib"],
        "host": ["id", "state_directory", "run_directory", "vmx", "orphan_timeout_ms", "power_off_vms_on_stop", "disk_window_mib"],
        "api": ["unix_socket", "listen", "certificate", "private_key", "tokens"],
        "volume": ["name", "device", "mount"],
    ]

    /// Reads and checks the file at `path`; every error names the key (and line, for syntax).
    static func load(path: String, executableDirectory: String) throws(Error) -> HostdConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error(description: "cannot read the configuration file \(path)")
        }
        return try parse(String(decoding: data, as: UTF8.self), source: path, executableDirectory: executableDirectory)
    }

    static func parse(_ text: String, source: String, executableDirectory: String) throws(Error) -> HostdConfiguration {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch {
            throw Error(description: "\(source): not valid TOML: \(error)")
        }
        try checkKeys(table, section: "", source: source)
        if let host = table["host"]?.table { try checkKeys(host, section: "host", source: source) }
        if let api = table["api"]?.table { try checkKeys(api, section: "api", source: source) }
        if let ha = table["ha"]?.table { try checkKeys(ha, section: "ha", source: source) }
        if let volumes = table["volume"]?.array {
            for value in volumes {
                guard let volume = value.table else { throw Error(description: "\(source): [[volume]] entries must be tables") }
                try checkKeys(volume, section: "volume", source: source)
            }
        }
        // The virtual switches and port groups ([[vswitch]], [[portgroup]]; docs/NETWORKING.md).
        let network: NetworkConfiguration
        do { network = try NetworkConfiguration(toml: table, source: source) } catch {
            throw Error(description: error.message)
        }
        let file: File
        do { file = try TOMLDecoder().decode(File.self, from: table) } catch {
            throw Error(description: "\(source): \(describe(error))")
        }
        let identity = HostIdentity.local(override: file.host?.id)
        let hostName = file.host?.id ?? identity.name
        let stateDirectory = file.host?.state_directory ?? "/var/lib/vmhostd/\(hostName)"
        let runDirectory = file.host?.run_directory ?? "/run/vmhostd/\(hostName)"
        let orphanTimeout = file.host?.orphan_timeout_ms ?? 32_000
        guard (100...3_600_000).contains(orphanTimeout) else {
            throw Error(description: "\(source): host.orphan_timeout_ms is \(orphanTimeout); it must be 100 – 3600000")
        }
        let window = file.host?.disk_window_mib ?? 16
        guard (1...256).contains(window) else {
            throw Error(description: "\(source): host.disk_window_mib is \(window); it must be 1 – 256")
        }
        let unixSocket = file.api?.unix_socket ?? "\(runDirectory)/hostd.sock"
        if let capacity = file.ha?.memory_capacity_mib, !(0...(1 << 24)).contains(capacity) {
            throw Error(description: "\(source): ha.memory_capacity_mib is \(capacity); it must be 0 – 16777216")
        }
        let settings = AgentContext.Settings(
            host: identity, vmxPath: file.host?.vmx ?? "\(executableDirectory)/vmx", runDirectory: runDirectory,
            stateDirectory: stateDirectory, orphanTimeoutMilliseconds: UInt64(orphanTimeout), diskWindowBytes: window << 20,
            apiSocket: unixSocket, haCapacityMemoryBytes: file.ha?.memory_capacity_mib.map { UInt64($0) << 20 })
        var datastores: [Datastore.Configuration] = []
        var mounts: [String: String] = [:]
        for (index, volume) in (file.volume ?? []).enumerated() {
            guard !volume.name.isEmpty, volume.name.utf8.count <= 64, !volume.name.contains("/") else {
                throw Error(description: "\(source): volume[\(index)].name '\(volume.name)' must be 1–64 bytes without '/'")
            }
            guard !datastores.contains(where: { $0.name == volume.name }) else {
                throw Error(description: "\(source): volume[\(index)].name '\(volume.name)' is used twice")
            }
            guard !volume.device.isEmpty else { throw Error(description: "\(source): volume[\(index)].device is empty") }
            datastores.append(Datastore.Configuration(name: volume.name, device: volume.device, mountPoint: volume.mount))
            if let mount = volume.mount { mounts[volume.name] = mount }
        }
        var listener: Listener?
        if let listen = file.api?.listen {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1...65535).contains(port) else {
                throw Error(description: "\(source): api.listen '\(listen)' must be HOST:PORT")
            }
            listener = Listener(host: String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port)
        }
        let tokens = file.api?.tokens ?? []
        for (index, token) in tokens.enumerated() where token.utf8.count < 16 {
            throw Error(description: "\(source): api.tokens[\(index)] has \(token.utf8.count) characters; tokens need at least 16")
        }
        if listener != nil && tokens.isEmpty {
            throw Error(description: "\(source): api.listen is set but api.tokens is empty: nobody could use the TCP listener")
        }
        return HostdConfiguration(
            agent: HostAgent.Configuration(settings: settings, datastores: datastores, network: network),
            unixSocket: unixSocket, listen: listener,
            certificatePath: file.api?.certificate, privateKeyPath: file.api?.private_key, tokens: tokens,
            powerOffVMsOnStop: file.host?.power_off_vms_on_stop ?? false, mounts: mounts)
    }

    private static func checkKeys(_ table: TOMLTable, section: String, source: String) throws(Error) {
        guard let known = knownKeys[section] else { return }
        for key in table.keys where !known.contains(key) {
            let place = section.isEmpty ? "top level" : "[\(section)]"
            throw Error(description: "\(source): unknown key '\(key)' in \(place) (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    private static func describe(_ error: any Swift.Error) -> String {
        if let decoding = error as? DecodingError {
            switch decoding {
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
                return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
            case .keyNotFound(let key, let context):
                return "\((context.codingPath + [key]).map(\.stringValue).joined(separator: ".")) is missing"
            @unknown default:
                return "\(decoding)"
            }
        }
        return "\(error)"
    }
}
