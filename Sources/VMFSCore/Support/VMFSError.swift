#if canImport(Glibc)
internal import Glibc
#endif

/// The error every VMFSCore operation throws.
///
/// A `VMFSError` names what went wrong (``code``), says it in words a user can act on
/// (``message``), and, where the failure is tied to a place on the volume, names the device,
/// the structure and the byte offset (``location``).
public struct VMFSError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The kind of failure. Maps to an `errno` value for FUSE and for tool exit codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Kind: Hashable, Sendable {
            case notFound, alreadyExists, noSpace, busy, invalidArgument, nameTooLong
            case corrupt, io, unsupported, readOnly, notVMFS, futureVersion, fenced
            case tooManyFiles, fileTooLarge, permissionDenied, timedOut, notEmpty, isDirectory
            case staleHandle, interrupted
        }
        fileprivate let kind: Kind

        /// No file of that name, or no such object.
        public static let notFound = Code(kind: .notFound)
        /// A file of that name exists already.
        public static let alreadyExists = Code(kind: .alreadyExists)
        /// The volume has no free blocks, pointer blocks or journal space left.
        public static let noSpace = Code(kind: .noSpace)
        /// The object is locked by another host.
        public static let busy = Code(kind: .busy)
        /// An argument is out of range or malformed.
        public static let invalidArgument = Code(kind: .invalidArgument)
        /// A name is longer than 127 bytes.
        public static let nameTooLong = Code(kind: .nameTooLong)
        /// An on-disk structure failed validation (checksum, magic, range).
        public static let corrupt = Code(kind: .corrupt)
        /// The device reported an I/O error.
        public static let io = Code(kind: .io)
        /// The operation is not supported by this volume or device.
        public static let unsupported = Code(kind: .unsupported)
        /// The volume or handle is read-only.
        public static let readOnly = Code(kind: .readOnly)
        /// The device does not carry a VMFS volume.
        public static let notVMFS = Code(kind: .notVMFS)
        /// The volume was written by a newer, incompatible format version.
        public static let futureVersion = Code(kind: .futureVersion)
        /// This host lost its heartbeat and may no longer write to the volume.
        public static let fenced = Code(kind: .fenced)
        /// The volume already holds its maximum of 255 files.
        public static let tooManyFiles = Code(kind: .tooManyFiles)
        /// The file would exceed the maximum file size.
        public static let fileTooLarge = Code(kind: .fileTooLarge)
        /// The operation is not permitted (for example creating a directory).
        public static let permissionDenied = Code(kind: .permissionDenied)
        /// A lock or I/O did not complete within its timeout.
        public static let timedOut = Code(kind: .timedOut)
        /// The target of an operation is not empty.
        public static let notEmpty = Code(kind: .notEmpty)
        /// The object is a directory (only the root exists).
        public static let isDirectory = Code(kind: .isDirectory)
        /// The handle refers to a file that no longer exists or whose lock was lost.
        public static let staleHandle = Code(kind: .staleHandle)
        /// The operation was interrupted.
        public static let interrupted = Code(kind: .interrupted)

        /// The `errno` value that represents this code at the POSIX boundary.
        public var errno: Int32 {
            switch kind {
            case .notFound: ENOENT
            case .alreadyExists: EEXIST
            case .noSpace, .tooManyFiles: ENOSPC
            case .busy: EBUSY
            case .invalidArgument: EINVAL
            case .nameTooLong: ENAMETOOLONG
            case .corrupt: EUCLEAN
            case .io, .fenced: EIO
            case .unsupported: EOPNOTSUPP
            case .readOnly: EROFS
            case .notVMFS, .futureVersion: EINVAL
            case .fileTooLarge: EFBIG
            case .permissionDenied: EPERM
            case .timedOut: ETIMEDOUT
            case .notEmpty: ENOTEMPTY
            case .isDirectory: EISDIR
            case .staleHandle: ESTALE
            case .interrupted: EINTR
            }
        }

        public var description: String { "\(kind)" }
    }

    /// Where on the volume a failure happened.
    public struct Location: Sendable, Equatable, CustomStringConvertible {
        /// The device path.
        public var device: String?
        /// The on-disk structure, for example `"volume header"` or `"lock record 12"`.
        public var structure: String?
        /// The byte offset on the device.
        public var offset: UInt64?

        public init(device: String? = nil, structure: String? = nil, offset: UInt64? = nil) {
            self.device = device
            self.structure = structure
            self.offset = offset
        }

        public var description: String {
            var parts: [String] = []
            if let structure { parts.append(structure) }
            if let offset { parts.append("at byte offset \(offset) (0x\(String(offset, radix: 16)))") }
            if let device { parts.append("on \(device)") }
            return parts.joined(separator: " ")
        }
    }

    /// The kind of failure.
    public var code: Code
    /// A sentence describing the failure.
    public var message: String
    /// The place on the volume the failure concerns, if any.
    public var location: Location?

    /// Creates an error.
    public init(_ code: Code, _ message: String, location: Location? = nil) {
        self.code = code
        self.message = message
        self.location = location
    }

    public var description: String {
        guard let location, !location.description.isEmpty else { return message }
        return "\(message) (\(location))"
    }

    /// Returns a copy whose location names `device` when none was named yet.
    public func on(device: String) -> VMFSError {
        var copy = self
        if copy.location == nil { copy.location = Location(device: device) }
        else if copy.location?.device == nil { copy.location?.device = device }
        return copy
    }

    /// An error for a failed system call, mapping its `errno` to a code.
    static func system(_ call: String, errno value: Int32, path: String? = nil, offset: UInt64? = nil) -> VMFSError {
        let code: Code
        switch value {
        case ENOENT: code = .notFound
        case EEXIST: code = .alreadyExists
        case ENOSPC: code = .noSpace
        case EBUSY, EAGAIN: code = .busy
        case EINVAL: code = .invalidArgument
        case EROFS: code = .readOnly
        case EACCES, EPERM: code = .permissionDenied
        case EOPNOTSUPP, ENOTTY, ENOSYS: code = .unsupported
        case EINTR: code = .interrupted
        default: code = .io
        }
        let reason = String(cString: strerror(value))
        return VMFSError(code, "\(call) failed: \(reason)", location: Location(device: path, offset: offset))
    }
}
