public import LiveMigration

/// One migration stream handed to a VMM: its socket arrives as a descriptor, its keys here.
public struct StreamGrant: Codable, Sendable, Equatable {
    public var index: Int
    /// Hex AES-256-GCM keys of this end (what it sends, what it receives).
    public var sendKey: String
    public var receiveKey: String
    /// Index of the connected socket among the frame's descriptors.
    public var descriptor: Int

    public init(index: Int, keys: StreamKeys, descriptor: Int) {
        self.index = index
        sendKey = Hex.encode(keys.send)
        receiveKey = Hex.encode(keys.receive)
        self.descriptor = descriptor
    }

    /// The keys, checked (64 hex digits each).
    public func keys() throws(VMXProtocolError) -> StreamKeys {
        guard let send = Hex.decode(sendKey), let receive = Hex.decode(receiveKey), send.count == 32, receive.count == 32 else {
            throw VMXProtocolError(.malformed, "stream \(index): keys must be 64 hex digits each")
        }
        return StreamKeys(send: send, receive: receive)
    }
}

/// `migrateOut` (agent → source VMM): start sending the running VM.
public struct MigrateOutRequest: Codable, Sendable, Equatable {
    public var options: MigrationOptions
    public var streams: [StreamGrant]

    public init(options: MigrationOptions, streams: [StreamGrant]) {
        self.options = options
        self.streams = streams
    }
}

/// `configureIncoming` (agent → destination VMM): build the machine a migration will restore.
/// The disks have no channels yet: they come with `attachDisks` once the files are handed over.
public struct IncomingSpecification: Codable, Sendable, Equatable {
    public struct Disk: Codable, Sendable, Equatable {
        public var identifier: String
        public var byteCount: UInt64
        public var readOnly: Bool

        public init(identifier: String, byteCount: UInt64, readOnly: Bool) {
            self.identifier = identifier
            self.byteCount = byteCount
            self.readOnly = readOnly
        }
    }

    public var uuid: String
    public var name: String
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    /// How the VM boots after a guest reset (images arrive as descriptors, as for `configure`).
    public var boot: BootSpecification
    public var disks: [Disk]
    public var orphanTimeoutMilliseconds: UInt64
    public var leaseValidUntilMonotonicNanoseconds: UInt64

    public init(uuid: String, name: String, vcpuCount: Int, memoryBytes: UInt64, boot: BootSpecification, disks: [Disk],
                orphanTimeoutMilliseconds: UInt64, leaseValidUntilMonotonicNanoseconds: UInt64) {
        self.uuid = uuid
        self.name = name
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.boot = boot
        self.disks = disks
        self.orphanTimeoutMilliseconds = orphanTimeoutMilliseconds
        self.leaseValidUntilMonotonicNanoseconds = leaseValidUntilMonotonicNanoseconds
    }
}

/// `migrateIn` (agent → destination VMM): the streams to receive on.
public struct MigrateInRequest: Codable, Sendable, Equatable {
    public var streams: [StreamGrant]

    public init(streams: [StreamGrant]) { self.streams = streams }
}

/// `migrationHandoff` (agent → source VMM): what became of the VM's files.
public struct MigrationHandoff: Codable, Sendable, Equatable {
    /// `committed`: the destination owns the VM (finish, serve post-copy pages, exit);
    /// `aborted`: this host kept it (resume the guest).
    public var outcome: String
    public var reason: String?

    public init(outcome: String, reason: String? = nil) {
        self.outcome = outcome
        self.reason = reason
    }
}

/// `migrationReady` (source VMM → agent): the guest is paused here and restored at the destination.
public struct MigrationReadyReport: Codable, Sendable, Equatable {
    public var postCopy: Bool
    public var pausedWallNanoseconds: Int64
    public var finalPages: Int
    public var stateBytes: Int
    public var outstandingPages: Int
    public var progress: MigrationProgress

    public init(ready: SwitchoverReady, progress: MigrationProgress) {
        postCopy = ready.postCopy
        pausedWallNanoseconds = ready.pausedWallNanoseconds
        finalPages = ready.finalPages
        stateBytes = ready.stateBytes
        outstandingPages = ready.outstandingPages
        self.progress = progress
    }
}

/// `migrationEnded` (VMM → agent): the migration's end as this VMM saw it.
public struct MigrationEndReport: Codable, Sendable, Equatable {
    /// `completed`, `failed` (the guest runs on at the source), `received` (destination: state
    /// restored, waiting for `start`), `postCopyComplete`, `postCopyLost` (destination: the
    /// source went away with pages missing; the VM cannot go on).
    public var result: String
    public var code: String?
    public var message: String?
    public var postCopy: Bool
    public var progress: MigrationProgress?

    public init(result: String, code: String? = nil, message: String? = nil, postCopy: Bool = false, progress: MigrationProgress? = nil) {
        self.result = result
        self.code = code
        self.message = message
        self.postCopy = postCopy
        self.progress = progress
    }
}
