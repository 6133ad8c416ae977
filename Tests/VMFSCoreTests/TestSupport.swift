import Testing
@testable import VMFSCore

/// Heartbeat timing fast enough for tests: renew every 100 ms, dead after 1 s, I/O timeout 300 ms.
let fastTiming = HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 1000, ioTimeoutMs: 300)

/// A formatted in-memory volume.
func makeMemoryVolume(size: UInt64 = 1 << 30, blockSize: UInt32 = 1 << 20, label: String = "test") throws -> MemoryBlockDevice {
    let device = MemoryBlockDevice(size: size)
    var options = FormatOptions()
    options.label = label
    options.blockSize = blockSize
    options.timing = fastTiming
    try VolumeFormatter.format(device, options: options)
    return device
}

/// Mount options for a test host named `name`.
func hostOptions(_ name: String, lockWaitMs: UInt32 = 0) -> MountOptions {
    var options = MountOptions(host: HostIdentity.local(override: name))
    options.timing = fastTiming
    options.lockWaitMs = lockWaitMs
    options.commitIntervalMs = 200
    return options
}

/// Deterministic pseudo-random bytes.
func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &* 0x9E3779B97F4A7C15 | 1
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        bytes[i] = UInt8(truncatingIfNeeded: state)
    }
    return bytes
}
