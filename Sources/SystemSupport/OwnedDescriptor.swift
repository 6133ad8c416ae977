internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A file descriptor this process owns: closed exactly once, by ``close()`` or on deinit.
public final class OwnedDescriptor: Sendable, CustomStringConvertible {
    private let value: Atomic<Int32>

    /// Takes ownership of `rawValue` (which must be open).
    public init(_ rawValue: Int32) { value = Atomic(rawValue) }

    deinit { close() }

    /// The descriptor number, or -1 once closed.
    public var rawValue: Int32 { value.load(ordering: .acquiring) }

    /// Closes the descriptor (later calls do nothing).
    public func close() {
        let old = value.exchange(-1, ordering: .acquiringAndReleasing)
        if old >= 0 { _ = Glibc.close(old) }
    }

    /// Gives up ownership without closing; returns the descriptor, -1 if already closed.
    public func release() -> Int32 { value.exchange(-1, ordering: .acquiringAndReleasing) }

    public var description: String { "fd \(rawValue)" }
}
