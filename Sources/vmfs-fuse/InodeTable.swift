internal import CFuse
internal import VMFSCore
import Synchronization

/// FUSE node ids and the VMFS file slots behind them.
///
/// The namespace is flat: the root directory is node 1 and the file in descriptor slot `s` has
/// inode number `s + 2` (``FileStatus/inode``, what `stat` shows). The node id the kernel uses
/// carries `s + 2` in its low 9 bits and an *instance* number above them.
///
/// Instances exist for the writeback cache. With it, the kernel keeps a file's size and times
/// itself and never takes them from the daemon again for an inode it has (a per-connection
/// rule of Linux), which would leave another host's changes invisible here. So while this host
/// does not have a file open (and so holds no lock on it), a lookup that finds the file changed
/// since the kernel's inode was made — another size, modification or change time, or another
/// file in the slot — hands out a new instance: the kernel drops its dentry (the node id
/// differs) and makes a fresh inode with the current attributes. While this host has the file
/// open, its lock keeps other hosts out and the instance stays. Without the writeback cache the
/// kernel takes attributes from every reply and the instance is always 0.
final class InodeTable: Sendable {
    static let root = fuse_ino_t(FUSE_ROOT_ID)
    /// One more than the highest slot VMFS uses (255 files).
    static let slotCount = 256
    private static let slotBits: UInt64 = 9

    /// The attributes the kernel keeps for itself in writeback-cache mode.
    struct Shape: Equatable {
        var size: UInt64
        var modificationTime: Int64
        var changeTime: Int64

        init(_ file: FileStatus) {
            size = file.size
            modificationTime = file.modificationTime
            changeTime = file.changeTime
        }
    }

    /// What the kernel was last told about one slot.
    fileprivate struct View {
        var generation: UInt32
        var shape: Shape
        var instance: UInt64
        /// The first instance handed out for this generation: older node ids of the slot are
        /// kernel inodes of files that no longer exist.
        var firstInstance: UInt64

        /// The kernel's inode holds what the file does not (a write-back it cached was refused).
        var diverged = false

        init(generation: UInt32, shape: Shape, instance: UInt64, replacing old: View?) {
            self.generation = generation
            self.shape = shape
            self.instance = instance
            firstInstance = old.map { $0.generation == generation ? $0.firstInstance : instance } ?? instance
        }
    }

    private let views = Mutex<[View?]>(Array(repeating: nil, count: slotCount))
    /// Hand out new instances when files change (writeback-cache mode).
    let versioned: Bool

    init(versioned: Bool) { self.versioned = versioned }

    /// The slot of node id `node`, or nil for the root and for ids VMFS never hands out.
    static func slot(of node: fuse_ino_t) -> Int? {
        let low = Int(node & ((1 << slotBits) - 1))
        guard node != root, low >= 2, low < slotCount + 2 else { return nil }
        return low - 2
    }

    private static func node(slot: Int, instance: UInt64) -> fuse_ino_t {
        instance << slotBits | UInt64(slot + 2)
    }

    /// The node id the kernel is to use for `file` now. `held`: this host has the file open.
    func node(for file: FileStatus, held: Bool) -> fuse_ino_t {
        guard file.slot >= 0, file.slot < Self.slotCount else { return 0 }
        let shape = Shape(file)
        return views.withLock { views in
            if var view = views[file.slot], view.generation == file.generation {
                if held {
                    // Changes now are this host's own (the kernel made them): keep the instance.
                    view.shape = shape
                    views[file.slot] = view
                    return Self.node(slot: file.slot, instance: view.instance)
                }
                if !versioned || (view.shape == shape && !view.diverged) { return Self.node(slot: file.slot, instance: view.instance) }
            }
            let instance = versioned ? (views[file.slot].map { $0.instance + 1 } ?? 0) : 0
            views[file.slot] = View(generation: file.generation, shape: shape, instance: instance, replacing: views[file.slot])
            return Self.node(slot: file.slot, instance: instance)
        }
    }

    /// The slot and generation the kernel means by `node`.
    ///
    /// - Throws: `isDirectory` for the root, `notFound` for an id VMFS never hands out,
    ///   `staleHandle` when the kernel was never told about the slot, or the node is an inode
    ///   of an earlier file in the slot.
    func file(_ node: fuse_ino_t) throws(VMFSError) -> (slot: Int, generation: UInt32) {
        guard let slot = Self.slot(of: node) else {
            throw VMFSError(node == Self.root ? .isDirectory : .notFound, "node \(node) is not a file")
        }
        guard let view = views.withLock({ $0[slot] }) else {
            throw VMFSError(.staleHandle, "node \(node) is unknown to this mount")
        }
        if versioned && node >> Self.slotBits < view.firstInstance {
            throw VMFSError(.staleHandle, "node \(node) is a file that no longer exists in slot \(slot)")
        }
        return (slot, view.generation)
    }

    /// The modification time the kernel was last told for the file in `slot` with `generation`.
    func toldModificationTime(slot: Int, generation: UInt32) -> Int64? {
        guard slot >= 0, slot < Self.slotCount else { return nil }
        return views.withLock { views in views[slot].flatMap { $0.generation == generation ? $0.shape.modificationTime : nil } }
    }

    /// True when `node` is the instance last handed out for its slot (the kernel's inode has
    /// the attributes this table recorded).
    func isCurrent(_ node: fuse_ino_t) -> Bool {
        guard let slot = Self.slot(of: node) else { return false }
        return views.withLock { $0[slot].map { Self.node(slot: slot, instance: $0.instance) == node } ?? false }
    }

    /// True when `file` still looks as the kernel's current instance of it was told.
    func matches(_ file: FileStatus) -> Bool {
        matches(file, told: views.withLock { $0[file.slot] }.map { Told(view: $0) })
    }

    /// What the kernel was told about one slot, captured at one moment.
    struct Told {
        fileprivate let generation: UInt32
        fileprivate let shape: Shape
        fileprivate let instance: UInt64

        fileprivate init(view: View) {
            generation = view.generation
            shape = view.shape
            instance = view.instance
        }
    }

    /// What the kernel was told about `slot` now. An open captures it before it counts its
    /// handle: from then on lookups treat the file as held and record its changes as the
    /// kernel's own, which they are not if another host made them before the lock was taken.
    func told(slot: Int) -> Told? {
        guard slot >= 0, slot < Self.slotCount else { return nil }
        return views.withLock { $0[slot] }.map { Told(view: $0) }
    }

    /// True when `file` looks as the kernel was `told`, and that is still the current instance.
    func matches(_ file: FileStatus, told: Told?) -> Bool {
        guard let told, told.generation == file.generation else { return false }
        let instance = views.withLock { $0[file.slot]?.instance }
        return !versioned || (told.shape == Shape(file) && told.instance == instance)
    }

    /// Hands out a new instance for `file`: the kernel's current one is stale and an OPEN of it
    /// was refused; the lookup the kernel retries with gets the new one.
    func renew(_ file: FileStatus) {
        views.withLock { views in
            let instance = versioned ? (views[file.slot].map { $0.instance + 1 } ?? 0) : 0
            views[file.slot] = View(generation: file.generation, shape: Shape(file), instance: instance, replacing: views[file.slot])
        }
    }

    /// Notes that the kernel's current inode of `slot` holds data or a size the file does not
    /// (a cached write was refused at write-back): the next lookup while the file is not open
    /// here hands out a new instance.
    func diverged(slot: Int) {
        views.withLock { views in
            guard slot >= 0, slot < Self.slotCount else { return }
            views[slot]?.diverged = true
        }
    }

    /// Records `file` as what the kernel's current instance holds: this host closed its last
    /// handle, after the kernel wrote back everything it had cached.
    func settle(_ file: FileStatus) {
        views.withLock { views in
            guard var view = views[file.slot], view.generation == file.generation else { return }
            view.shape = Shape(file)
            views[file.slot] = view
        }
    }
}
