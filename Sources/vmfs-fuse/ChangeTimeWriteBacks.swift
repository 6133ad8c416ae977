import Synchronization

/// The kernel's change-time write-backs after this host's renames and unlinks.
///
/// With the writeback cache the kernel keeps a file's change time itself. After a RENAME or
/// UNLINK it stamps the files involved (the renamed one, an exchanged or replaced one, the
/// unlinked one) and writes the stamp back at once, from the same process and before the
/// system call returns: a SETATTR of mtime and ctime without a file handle, with the mtime the
/// kernel has cached, which may be older than the volume's (another host may have written the
/// file since). Storing that would move the file's mtime back, and taking the file's lock for
/// it fails while another host has the file open, leaving an I/O error on the kernel inode that
/// a later `close` of any descriptor of the file reports. So these write-backs are recognised
/// and answered without storing anything.
///
/// A write-back is expected from a process for a second after its RENAME or UNLINK succeeded,
/// at most two of them, and never after that process looked a name up again (a `utimensat` by
/// path always does, so a user's time change is never mistaken for one).
final class ChangeTimeWriteBacks: Sendable {
    private struct Expected {
        var remaining: Int
        var deadline: UInt64
    }

    private let expected = Mutex<[Int32: Expected]>([:])
    private static let lifetimeNanoseconds: UInt64 = 1_000_000_000

    /// Process `pid` renamed or unlinked a file: up to two write-backs follow.
    func renamedOrUnlinked(by pid: Int32) {
        let now = Self.now
        expected.withLock { expected in
            expected = expected.filter { $0.value.deadline > now }
            expected[pid] = Expected(remaining: 2, deadline: now + Self.lifetimeNanoseconds)
        }
    }

    /// Process `pid` looked a name up: whatever it sends next is its own request.
    func lookedUp(by pid: Int32) {
        expected.withLock { _ = $0.removeValue(forKey: pid) }
    }

    /// True (and counted) when a SETATTR of process `pid` setting only mtime and ctime is one
    /// of the write-backs its rename or unlink caused.
    func isWriteBack(from pid: Int32) -> Bool {
        let now = Self.now
        return expected.withLock { expected in
            guard let entry = expected[pid], entry.deadline > now, entry.remaining > 0 else { return false }
            expected[pid]?.remaining -= 1
            return true
        }
    }

    private static var now: UInt64 { GraceHandles.now }
}
