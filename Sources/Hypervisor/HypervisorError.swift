#if canImport(Glibc)
internal import Glibc
#endif

/// An error from the hypervisor: a machine-readable ``Code`` plus a message naming what failed
/// and where (the file, offset, field, ioctl or guest address involved).
public struct HypervisorError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The category of a ``HypervisorError``.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// `/dev/kvm` is missing, not accessible, or speaks an unexpected API version.
        public static let kvmUnavailable = Code("kvmUnavailable")
        /// A system call or KVM ioctl failed; ``HypervisorError/errno`` holds the reason.
        public static let systemCall = Code("systemCall")
        /// The virtual machine configuration is invalid (names the offending field).
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// A kernel, initrd or guest image is corrupt, truncated or of an unsupported kind.
        public static let invalidImage = Code("invalidImage")
        /// The request exceeds what the host allows (vCPUs, memory).
        public static let resourceLimit = Code("resourceLimit")
        /// A guest-physical access fell outside guest memory.
        public static let guestMemory = Code("guestMemory")
        /// The virtual machine is in the wrong state for the operation (for example run twice).
        public static let invalidState = Code("invalidState")
        /// An operation did not complete in time (for example vCPUs that did not pause).
        public static let timedOut = Code("timedOut")
        /// A saved machine state is malformed: truncated, a bad checksum, a field out of range
        /// (the message names the section and the field).
        public static let invalidSavedState = Code("invalidSavedState")
        /// A saved machine state cannot be restored here: another format version, or a machine
        /// that differs from the one being restored (vCPUs, memory, disks).
        public static let incompatibleState = Code("incompatibleState")
    }

    /// The error category.
    public var code: Code
    /// A human-readable description naming what is wrong and where.
    public var message: String
    /// The `errno` value for ``Code/systemCall`` errors.
    public var errno: Int32?

    /// Creates an error.
    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        if let errno {
            return "\(code): \(message): \(String(cString: strerror(errno))) (errno \(errno))"
        }
        return "\(code): \(message)"
    }

    /// An error for a failed system call, capturing the current `errno`.
    static func systemCall(_ what: String, errno value: Int32 = Glibc.errno) -> HypervisorError {
        HypervisorError(.systemCall, what, errno: value)
    }
}
