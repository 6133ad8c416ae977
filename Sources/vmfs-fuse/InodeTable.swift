internal import CFuse
internal import VMFSCore
import Synchronization

/// FUSE inode numbers and the VMFS file slots behind them.
///
/// The namespace is flat: the root directory is inode 1 and the file in descriptor slot `s` is
/// inode `s + 2` (``FileStatus/inode``). A slot is reused when its file is removed and another
/// created, so every entry handed to the kernel carries the descriptor generation, and this
/// table remembers which generation of each slot the kernel was last told about: `getattr`,
/// `open` and `setattr` by inode act on exactly that file and fail with `ESTALE` once it is gone.
final class InodeTable: Sendable {
    static let root = fuse_ino_t(FUSE_ROOT_ID)
    /// One more than the highest slot VMFS uses (255 files).
    static let slotCount = 256

    private let generations = Mutex<[UInt32?]>(Array(repeating: nil, count: slotCount))

    /// The slot of `inode`, or nil for the root and for numbers VMFS never hands out.
    static func slot(of inode: fuse_ino_t) -> Int? {
        guard inode >= 2, inode < fuse_ino_t(slotCount + 2) else { return nil }
        return Int(inode - 2)
    }

    /// Notes that the kernel now knows `status` under its inode number.
    func remember(_ status: FileStatus) {
        guard status.slot >= 0, status.slot < Self.slotCount else { return }
        generations.withLock { $0[status.slot] = status.generation }
    }

    /// The slot and generation the kernel means by `inode`.
    ///
    /// - Throws: `notFound` for the root or an unknown number, `staleHandle` when the kernel
    ///   was never told about this inode.
    func file(_ inode: fuse_ino_t) throws(VMFSError) -> (slot: Int, generation: UInt32) {
        guard let slot = Self.slot(of: inode) else {
            throw VMFSError(inode == Self.root ? .isDirectory : .notFound, "inode \(inode) is not a file")
        }
        guard let generation = generations.withLock({ $0[slot] }) else {
            throw VMFSError(.staleHandle, "inode \(inode) is unknown to this mount")
        }
        return (slot, generation)
    }
}
