public import Foundation

/// A host of a test cluster: `vmhostd` running in its own network namespace with its own
/// identity, configuration, state and run directories, sharing the cluster's volume images.
public final class AgentHost: @unchecked Sendable {
    public let name: String
    public let index: Int
    public let lab: NetworkLab
    public let directory: URL
    public let token: String
    public let port = 8443
    private var process: Process?

    /// The configuration file.
    public var configPath: String { directory.appendingPathComponent("hostd.toml").path }
    public var runDirectory: String { directory.appendingPathComponent("run").path }
    public var stateDirectory: String { directory.appendingPathComponent("state").path }
    /// The local API socket (reachable from the tests' namespace: Unix sockets are not per network namespace).
    public var socketPath: String { "\(runDirectory)/hostd.sock" }
    /// The certificate the agent generated for its TLS listener.
    public var certificatePath: String { "\(stateDirectory)/tls/hostd.crt" }
    public var address: String { lab.address(index) }
    public var url: String { "https://\(address):\(port)" }
    public var logPath: String { directory.appendingPathComponent("hostd.log").path }

    /// - Parameters:
    ///   - volumes: (datastore name, image path) pairs.
    ///   - extra: More TOML lines for the `[host]` table (e.g. `orphan_timeout_ms = 3000`).
    ///   - extraTables: More TOML after the volumes (e.g. `[[vswitch]]` and `[[portgroup]]` tables).
    public init(name: String, index: Int, lab: NetworkLab, base: URL, volumes: [(String, String)], extraHost: [String] = [],
                extraTables: [String] = []) throws {
        self.name = name
        self.index = index
        self.lab = lab
        directory = base.appendingPathComponent(name)
        token = "token-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var lines = [
            "[host]", "id = \"\(name)\"", "state_directory = \"\(stateDirectory)\"", "run_directory = \"\(runDirectory)\"",
            "vmx = \"\(toolsDirectory.appendingPathComponent("vmx").path)\"",
        ] + extraHost
        lines += ["[api]", "listen = \"\(lab.address(index)):\(port)\"", "tokens = [\"\(token)\"]"]
        for (datastore, image) in volumes {
            lines += ["[[volume]]", "name = \"\(datastore)\"", "device = \"\(image)\""]
        }
        lines += extraTables
        try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    deinit { kill(signal: SIGKILL) }

    /// More environment for the agent (its fault-injection points, `docs/AGENT.md`).
    public var environment: [String: String] = [:]

    /// Starts the agent and waits until its local API answers.
    public func start(timeout: TimeInterval = 30) throws {
        let line = lab.command(in: index, [toolsDirectory.appendingPathComponent("vmhostd").path, "--config", configPath])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: line[0])
        process.arguments = Array(line.dropFirst())
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let logFile = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logFile.seekToEndOfFile()
        process.standardOutput = logFile
        process.standardError = logFile
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let result = try? curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socketPath, "http://agent/v1/host"]),
               result.stdout == "200" { return }
            guard process.isRunning else { throw LabError("vmhostd \(name) exited: \(log(lines: 20))") }
            usleep(50_000)
        }
        throw LabError("vmhostd \(name) did not answer within \(timeout) s: \(log(lines: 20))")
    }

    /// The agent's process id (nsenter execs it, so this is vmhostd's own).
    public var pid: Int32? { process?.isRunning == true ? process?.processIdentifier : nil }

    /// Sends `signal` to the agent and, for SIGTERM/SIGINT, waits for it to exit.
    public func kill(signal: Int32) {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, signal)
        if signal == SIGKILL || signal == SIGTERM || signal == SIGINT { process.waitUntilExit() }
    }

    /// The last lines of the agent's log.
    public func log(lines: Int) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// `curl` against the local socket: `path` like `/v1/vms`.
    public func local(_ method: String = "GET", _ path: String, json: String? = nil) throws -> ToolResult {
        var arguments = ["-s", "-X", method, "--unix-socket", socketPath, "http://agent\(path)"]
        if let json { arguments += ["-H", "Content-Type: application/json", "-d", json] }
        return try curl(arguments)
    }

    /// Runs `vmctl` against this agent's local socket.
    public func vmctl(_ arguments: [String]) throws -> ToolResult {
        try runTool("vmctl", arguments, environment: ["VMHOSTD_SOCKET": socketPath], timeout: 180)
    }

    /// The pids of this host's VMM processes (from their runtime records).
    public var vmmPIDs: [Int32] {
        let directory = "\(runDirectory)/vms"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(directory)/\(name)"),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
            return (object["pid"] as? NSNumber)?.int32Value
        }
    }
}

/// Runs curl with a timeout.
public func curl(_ arguments: [String]) throws -> ToolResult {
    try runSystem("/usr/bin/curl", ["--max-time", "60"] + arguments, timeout: 90)
}
