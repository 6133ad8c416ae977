/// Parameters of a new volume.
public struct FormatOptions: Sendable {
    public var label: String = ""
    public var blockSize: UInt32 = 1 << 20
    public var maxHosts: UInt32 = UInt32(FormatConstants.minimumHosts)
    /// Journal size per host; `nil` picks 1/1024 of the device, 1–16 MiB.
    public var journalSize: UInt64?
    public var timing: HeartbeatTiming = .vmwareDefaults
    /// The volume UUID; `nil` makes a random one.
    public var uuid: HostUUID?
    /// Overwrite an existing filesystem signature.
    public var force = false

    public init() {}
}

/// Creates a volume (`mkfs.vmfs`): writes the header and its backup and clears the metadata
/// regions, without touching the data area, so even a 64 TiB sparse image formats in well under
/// a second.
public enum VolumeFormatter {
    /// Formats `device` and returns the new header.
    ///
    /// - Throws: ``VMFSError/Code/busy`` when the device already carries a filesystem signature
    ///   and `options.force` is false; ``VMFSError/Code/invalidArgument`` for parameters that do
    ///   not fit the device.
    @discardableResult
    public static func format(_ device: any BlockDevice, options: FormatOptions) throws(VMFSError) -> VolumeHeader {
        guard !device.isReadOnly else {
            throw VMFSError(.readOnly, "\(device.path) is read-only", location: .init(device: device.path))
        }
        if Array(options.label.utf8).count > 127 {
            throw VMFSError(.invalidArgument, "the label is \(options.label.utf8.count) bytes; labels are at most 127 bytes")
        }
        try options.timing.validate()
        if !options.force, let found = try FilesystemSignature.detect(device) {
            throw VMFSError(.busy, "\(device.path) already contains \(found); use --force to overwrite it",
                            location: .init(device: device.path))
        }
        let journalSize = options.journalSize ?? VolumeLayout.defaultJournalSize(deviceSize: device.size)
        let layout = try VolumeLayout.compute(deviceSize: device.size, blockSize: options.blockSize,
                                              maxHosts: options.maxHosts, journalSize: journalSize)
        let header = VolumeHeader(uuid: options.uuid ?? HostUUID.random(), label: options.label,
                                  creationTime: Clock.wallNanoseconds, layout: layout,
                                  heartbeatIntervalMs: options.timing.renewIntervalMs,
                                  deadIntervalMs: options.timing.deadIntervalMs, ioTimeoutMs: options.timing.ioTimeoutMs)
        // Invalidate the old header first, so a crash part-way leaves no volume rather than a mixed one.
        try device.write(bytes: [UInt8](repeating: 0, count: FormatConstants.sectorSize), at: 0)
        try device.flush()
        // Every metadata region reads as zeros ("pristine") afterwards: free slots, free locks,
        // empty journals, free clusters, an empty name table.
        try device.zero(offset: UInt64(FormatConstants.sectorSize), length: layout.dataOffset - UInt64(FormatConstants.sectorSize))
        try device.write(bytes: header.encoded(), at: layout.backupHeaderOffset)
        try device.flush()
        try device.write(bytes: header.encoded(), at: 0)
        try device.flush()
        return header
    }
}
