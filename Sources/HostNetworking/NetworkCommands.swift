internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// Runs the host's network tools (`ip`, `tc`, `nft`) and turns their failures into
/// ``NetworkError``s that say what was being done and why it failed (permission, a name in use,
/// a missing tool).
public struct NetworkCommands: Sendable {
    public enum Tool: String, Sendable, CaseIterable {
        case ip, tc, nft

        var package: String { self == .nft ? "nftables" : "iproute2" }
    }

    /// Directories searched for the tools.
    public var searchPath: [String]

    public init(searchPath: [String] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
        self.searchPath = searchPath
    }

    /// The executable of `tool`, or nil when it is not installed.
    public func path(of tool: Tool) -> String? {
        searchPath.map { "\($0)/\(tool.rawValue)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs `tool arguments` (with `input` on its standard input) for `purpose`; returns its output.
    ///
    /// - Throws: ``NetworkError`` with the output: ``NetworkError/Code/permissionDenied`` when
    ///   the kernel refused for lack of privilege, ``NetworkError/Code/nameClash`` for an
    ///   interface that exists, ``NetworkError/Code/notFound`` for one that does not,
    ///   ``NetworkError/Code/unavailable`` when the tool is not installed.
    @discardableResult
    public func run(_ tool: Tool, _ arguments: [String], input: String? = nil, purpose: String) throws(NetworkError) -> String {
        guard let executable = path(of: tool) else {
            throw NetworkError(.unavailable, "\(purpose): '\(tool.rawValue)' is not installed (package \(tool.package))")
        }
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var output = [CChar](repeating: 0, count: 64 << 10)
        var length = 0
        let inputBytes = Array((input ?? "").utf8)
        let status = inputBytes.withUnsafeBytes { inputPointer in
            cvmfs_run_command(executable, &argv, input == nil ? nil : inputPointer.baseAddress, inputBytes.count,
                              &output, output.count, &length)
        }
        let text = String(decoding: output.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard status >= 0 else {
            throw NetworkError(.failed, "\(purpose): cannot run \(executable): errno \(-status)")
        }
        guard status == 0 else { throw Self.classify(text, purpose: purpose, command: ([tool.rawValue] + arguments).joined(separator: " ")) }
        return text
    }

    static func classify(_ output: String, purpose: String, command: String) -> NetworkError {
        let lower = output.lowercased()
        if lower.contains("operation not permitted") || lower.contains("permission denied") {
            return NetworkError(.permissionDenied, "\(purpose) needs CAP_NET_ADMIN (run as root); `\(command)` was refused", output: output)
        }
        if lower.contains("file exists") {
            return NetworkError(.nameClash, "\(purpose): the name is in use already (`\(command)`)", output: output)
        }
        if lower.contains("cannot find device") || lower.contains("no such device") || lower.contains("does not exist") {
            return NetworkError(.notFound, "\(purpose): no such interface (`\(command)`)", output: output)
        }
        return NetworkError(.failed, "\(purpose): `\(command)` failed", output: output)
    }
}
