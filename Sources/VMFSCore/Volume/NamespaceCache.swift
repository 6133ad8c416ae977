import Synchronization

/// The name table as seen without holding its lock, revalidated by the lock's version.
///
/// Every change of the name table happens under the file table lock, and taking or releasing
/// that lock bumps its version. A copy read while the lock was free, with the same version
/// before and after the read, is therefore a consistent snapshot for as long as the version
/// stays the same: one sector read per lookup revalidates it.
final class NamespaceCache: Sendable {
    /// The names, and the root directory's attributes recorded with them (nil: none yet).
    struct Table {
        var entries: [NameEntry]
        var directory: DirectoryAttributes?
    }

    private struct Snapshot {
        var lockVersion: UInt64
        var table: Table
    }

    let device: any BlockDevice
    let layout: VolumeLayout
    let volumeID: UInt64
    let locks: LockManager
    private let cached = Mutex<Snapshot?>(nil)

    init(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64, locks: LockManager) {
        self.device = device
        self.layout = layout
        self.volumeID = volumeID
        self.locks = locks
    }

    /// Forgets the cached copy.
    func invalidate() { cached.withLock { $0 = nil } }

    /// Every name on the volume.
    func entries() throws(VMFSError) -> [NameEntry] { try table().entries }

    /// The names and the root directory's attributes, consistent with each other.
    func table() throws(VMFSError) -> Table {
        var last = Table(entries: [], directory: nil)
        for attempt in 0..<20 {
            let (before, _) = try locks.read(FormatConstants.tableLockIndex, kind: .fileTable)
            if let snapshot = cached.withLock({ $0 }), snapshot.lockVersion == before.version, before.mode == .free {
                return snapshot.table
            }
            let read: Table
            do throws(VMFSError) {
                read = try Self.readNamesAndDirectory(device: device, layout: layout, volumeID: volumeID)
            } catch where error.code == .corrupt {
                // Torn by another host's home write (its lock moved or is held): look again.
                let (after, _) = try locks.read(FormatConstants.tableLockIndex, kind: .fileTable)
                if (after.version == before.version && after.mode == .free) || attempt == 19 { throw error }
                Clock.sleep(milliseconds: 2)
                continue
            }
            last = read
            let (after, _) = try locks.read(FormatConstants.tableLockIndex, kind: .fileTable)
            if after.version == before.version && after.mode == .free {
                cached.withLock { $0 = Snapshot(lockVersion: after.version, table: last) }
                return last
            }
            // A namespace change is in progress on another host: its home writes may be half done.
            if attempt < 19 { Clock.sleep(milliseconds: 2) }
        }
        return last
    }

    /// The entry named `name`.
    func lookup(_ name: String) throws(VMFSError) -> NameEntry? {
        try entries().first { $0.name == name }
    }

    /// Reads and decodes every name (primary, falling back to the mirror per sector).
    static func readTable(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64) throws(VMFSError) -> [NameEntry] {
        try readNamesAndDirectory(device: device, layout: layout, volumeID: volumeID).entries
    }

    /// Reads and decodes the whole name table (primary, falling back to the mirror per sector).
    static func readNamesAndDirectory(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64) throws(VMFSError) -> Table {
        let count = FormatConstants.nameTableSectors
        let size = FormatConstants.sectorSize
        let primary = try device.read(count: count * size, at: layout.nameTableOffset)
        var entries: [NameEntry] = []
        var directory: DirectoryAttributes?
        for index in 0..<count {
            let address = layout.nameTableSector(index)
            let bytes = Array(primary[(index * size)..<((index + 1) * size)])
            let sector: NameTableSector
            do {
                sector = try NameTableSector.decode(bytes, index: index, volumeID: volumeID, address: address)
            } catch {
                let mirror = try device.read(count: size, at: layout.nameTableMirrorOffset + UInt64(index * size))
                guard let fallback = try? NameTableSector.decode(mirror, index: index, volumeID: volumeID, address: address) else {
                    throw error
                }
                sector = fallback
            }
            entries += sector.entries.compactMap { $0 }
            if index == 0 { directory = sector.directory }
        }
        return Table(entries: entries, directory: directory)
    }
}
