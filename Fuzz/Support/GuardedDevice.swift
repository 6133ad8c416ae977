public import VMFSCore
public import VMFSTestSupport

/// `base` behind a guard that turns every attempt to write outside the device into a crash the
/// fuzzer reports, before the write reaches the device below.
///
/// The devices below refuse such a write with an error; that error is the last line of defence,
/// and a harness must see the attempt itself: it means a value read from disk reached a device
/// offset without a range check. A read-only guard (`writable: false`) crashes on *any* write,
/// zeroing or discard (`fsck.vmfs -n`, `vmfs info` and the other inspectors must write nothing).
/// The guard keeps the size `base` had when it was made; it must never change.
public func guarded(_ base: any BlockDevice, writable: Bool = true) -> WriteHookDevice {
    let size = base.size
    return WriteHookDevice(base) { change, offset, length in
        guard writable else { fatalError("fuzz oracle: \(change) of \(length) bytes at \(offset) through a read-only view") }
        guard offset <= size, length <= size - offset else {
            fatalError("fuzz oracle: \(change) of \(length) bytes at \(offset) lies outside the device (\(size) bytes)")
        }
    }
}
