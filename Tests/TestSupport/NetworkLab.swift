public import Foundation

/// Machines on one machine: a "physical" bridge in the root namespace and one network namespace
/// per host (and per client), each with its own address on the bridge through a veth pair.
///
/// Names carry a random identifier so several runs can coexist; everything is removed when the
/// lab is released (``tearDown()`` or deinit). Programs enter a namespace with `nsenter --net`
/// only, so they share the file system and its mounts with the tests.
public final class NetworkLab: @unchecked Sendable {
    public let id: String
    /// The first three octets of the lab's /24.
    public let prefix: String
    public let bridge: String
    public private(set) var namespaces: [String] = []
    private var removed = false

    /// Creates the bridge (address `.254`) and `count` namespaces with addresses `.1` … `.count`.
    public init(namespaces count: Int) throws {
        id = String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(6))
        prefix = "10.\(200 + Int.random(in: 0..<50)).\(Int.random(in: 0..<256))"
        bridge = "vb\(id)"
        do {
            try Self.ip(["link", "add", bridge, "type", "bridge"])
            try Self.ip(["addr", "add", "\(prefix).254/24", "dev", bridge])
            try Self.ip(["link", "set", bridge, "up"])
            for index in 1...count { try addNamespace(index) }
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    /// The namespace of machine `index` (1-based).
    public func namespace(_ index: Int) -> String { "vmfs-\(id)-\(index)" }
    /// The address of machine `index`.
    public func address(_ index: Int) -> String { "\(prefix).\(index)" }
    /// The root namespace's side of machine `index`'s link.
    public func link(_ index: Int) -> String { "v\(id)\(index)" }

    private func addNamespace(_ index: Int) throws {
        let name = namespace(index)
        try Self.ip(["netns", "add", name])
        namespaces.append(name)
        try Self.ip(["link", "add", link(index), "type", "veth", "peer", "name", "eth0", "netns", name])
        try Self.ip(["link", "set", link(index), "master", bridge, "up"])
        try Self.ip(["-n", name, "addr", "add", "\(address(index))/24", "dev", "eth0"])
        try Self.ip(["-n", name, "link", "set", "eth0", "up"])
        try Self.ip(["-n", name, "link", "set", "lo", "up"])
    }

    /// Cuts machine `index` off the network (its link goes down), or connects it again.
    public func setLink(_ index: Int, up: Bool) throws {
        try Self.ip(["link", "set", link(index), up ? "up" : "down"])
    }

    /// The command line that runs `arguments` inside machine `index`'s network namespace.
    public func command(in index: Int, _ arguments: [String]) -> [String] {
        ["/usr/bin/nsenter", "--net=/run/netns/\(namespace(index))", "--"] + arguments
    }

    /// Runs a program inside machine `index`'s namespace to completion.
    @discardableResult
    public func run(in index: Int, _ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval? = 120) throws -> ToolResult {
        let line = command(in: index, arguments)
        return try runSystem(line[0], Array(line.dropFirst()), environment: environment, timeout: timeout)
    }

    /// Removes every namespace and the bridge.
    public func tearDown() {
        guard !removed else { return }
        removed = true
        for name in namespaces { try? Self.ip(["netns", "delete", name]) }
        try? Self.ip(["link", "delete", bridge])
    }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> ToolResult {
        let result = try runSystem("/usr/sbin/ip", arguments)
        guard result.status == 0 else {
            throw LabError("ip \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        }
        return result
    }

    /// True when this machine can make namespaces (root, iproute2, nsenter).
    public static var isAvailable: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/nsenter")
    }
}

/// A failure setting up the lab.
public struct LabError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
