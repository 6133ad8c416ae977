/// Where an iSCSI LUN is: `iscsi://[user[%password]@]host[:port]/target-iqn/lun` (QEMU's
/// convention). The host may be a name, an IPv4 address or an IPv6 address in brackets; the port
/// defaults to 3260. The first `%` of the credentials separates user and password; escapes
/// (`%25`, `%40`) are decoded in the password and the target name.
public struct ISCSIAddress: Sendable, Equatable, CustomStringConvertible {
    public var user: String?
    public var password: String?
    public var host: String
    public var port: UInt16
    public var target: String
    public var lun: Int

    /// The URL scheme prefix.
    public static let scheme = "iscsi://"

    /// True when `path` names an iSCSI LUN rather than a file or device node.
    public static func isISCSI(_ path: String) -> Bool { path.lowercased().hasPrefix(scheme) }

    public init(user: String? = nil, password: String? = nil, host: String, port: UInt16 = 3260, target: String, lun: Int) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.target = target
        self.lun = lun
    }

    /// Parses a URL.
    ///
    /// - Throws: ``VMFSError/Code/invalidArgument`` naming the part that is malformed.
    public init(parsing url: String) throws(VMFSError) {
        func bad(_ what: String) -> VMFSError {
            VMFSError(.invalidArgument, "\(Self.redacted(url)) is not a valid iSCSI URL: \(what) "
                      + "(expected iscsi://[user[%password]@]host[:port]/target-iqn/lun)")
        }
        guard Self.isISCSI(url) else { throw bad("it does not start with iscsi://") }
        var rest = Substring(url.dropFirst(Self.scheme.count))
        guard let slash = rest.firstIndex(of: "/") else { throw bad("the target name and LUN are missing") }
        var authority = rest[..<slash]
        rest = rest[rest.index(after: slash)...]
        if let at = authority.lastIndex(of: "@") {
            let credentials = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let separator = credentials.firstIndex(of: "%") {
                user = String(credentials[..<separator])
                password = try Self.decode(credentials[credentials.index(after: separator)...], bad)
            } else {
                user = try Self.decode(credentials, bad)
            }
            if user?.isEmpty ?? true { throw bad("the user name is empty") }
        }
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw bad("the IPv6 address has no closing ]") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                port = 3260
            } else {
                guard after.hasPrefix(":"), let number = UInt16(after.dropFirst()), number > 0 else { throw bad("the port is not a number 1…65535") }
                port = number
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let number = UInt16(authority[authority.index(after: colon)...]), number > 0 else {
                throw bad("the port is not a number 1…65535")
            }
            port = number
        } else {
            host = String(authority)
            port = 3260
        }
        guard !host.isEmpty else { throw bad("the host is empty") }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || ".-_:".contains($0) }) else { throw bad("the host contains invalid characters") }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw bad("the path must be /target-iqn/lun") }
        target = try Self.decode(parts[0], bad)
        guard !target.isEmpty, target.utf8.count <= 223 else { throw bad("the target name must be 1…223 bytes") }
        guard target.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { throw bad("the target name must be printable ASCII") }
        guard let number = Int(parts[1]), (0...16383).contains(number) else { throw bad("the LUN must be a number 0…16383") }
        lun = number
    }

    /// `host:port` as libiscsi wants it.
    public var portal: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The URL without the password.
    public var description: String {
        let credentials = user.map { "\($0)@" } ?? ""
        return "\(Self.scheme)\(credentials)\(portal)/\(target)/\(lun)"
    }

    /// `url` with any password replaced by `***`, for messages about a URL that did not parse.
    static func redacted(_ url: String) -> String {
        guard isISCSI(url) else { return url }
        let rest = url.dropFirst(scheme.count)
        guard let slash = rest.firstIndex(of: "/"), let at = rest[..<slash].lastIndex(of: "@"),
              let percent = rest[..<at].firstIndex(of: "%") else { return url }
        return scheme + rest[..<percent] + "%***" + rest[at...]
    }

    private static func decode(_ text: Substring, _ bad: (String) -> VMFSError) throws(VMFSError) -> String {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        let utf8 = text.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%") {
                let first = utf8.index(after: index)
                guard first != utf8.endIndex, utf8.index(after: first) != utf8.endIndex,
                      let high = hexValue(utf8[first]), let low = hexValue(utf8[utf8.index(after: first)]) else {
                    throw bad("a percent escape is malformed")
                }
                bytes.append(high << 4 | low)
                index = utf8.index(first, offsetBy: 2)
            } else {
                bytes.append(byte)
                index = utf8.index(after: index)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self), !decoded.contains("\0") else {
            throw bad("an escaped part is not valid UTF-8")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
