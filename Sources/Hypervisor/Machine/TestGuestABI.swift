/// The contract between the VMM and the freestanding test guest in `Tools/guest`.
///
/// Every vCPU enters the guest image's ELF entry point directly in 64-bit mode at CPL3 with
/// IOPL=3 (`RFLAGS = 0x3002`), interrupts off, with:
/// - `RDI` = vCPU index (0 = bootstrap processor),
/// - `RSI` = ``parameterBlockAddress``,
/// - `RDX` = vCPU count,
/// - `RSP` = the top of that vCPU's private 64 KiB stack.
///
/// The guest reports through the 16550 UART at 0x3f8, writes progress codes to ``markerPort``,
/// and ends by writing its result (``TestGuestResult``) to ``exitPort``.
public enum TestGuestABI {
    /// Guest-physical address of the parameter block (one page).
    public static let parameterBlockAddress: UInt64 = 0x6000
    /// A 32-bit write powers the VM off with that value as its status.
    public static let exitPort: UInt16 = 0xF4
    /// A 32-bit write records a timestamped ``GuestMarker``.
    public static let markerPort: UInt16 = 0xF8
    /// A write blocks the writing vCPU in the VMM until the machine powers off (an idle vCPU at
    /// CPL3 cannot `hlt`; this keeps it from spinning).
    public static let parkPort: UInt16 = 0xFC
    /// The tools channel: a 32-bit write is a guest heartbeat (VM monitoring), counted with the
    /// host time it arrived. Real guests would send it from their tools daemon.
    public static let toolsHeartbeatPort: UInt16 = 0xF0
    /// A 32-bit read returns the machine's restore count (``MachineState/restoreCount``): it
    /// changes when the machine was migrated or resumed from a saved state, so a guest knows
    /// when to verify its memory.
    public static let epochPort: UInt16 = 0xE0
    /// Byte offset in the parameter block of the guest TSC frequency in kHz (u64), which the VMM
    /// fills in after creating the vCPUs (0 when unknown).
    public static let tscKilohertzOffset: UInt64 = 104
    /// "TGPB".
    public static let parameterMagic: UInt32 = 0x4250_4754
    public static let parameterVersion: UInt32 = 1
    /// The guest image must load at or above this address (below it: GDT, TSS, parameters, page tables).
    public static let imageMinimumAddress: UInt64 = 0x10_0000
    /// Bytes of stack per vCPU.
    public static let stackSize: UInt64 = 64 << 10
    /// Number of 64-bit workload arguments in the parameter block.
    public static let argumentCount = 8
    /// Marker code the guest writes as its very first action.
    public static let entryMarker: UInt32 = 1

    /// Parameter block layout (all little-endian):
    /// `u32 magic @0, u32 version @4, u32 vcpu_count @8, u32 workload @12, u64 memory_size @16,
    /// u64 heap_start @24, u64 heap_end @32, u64 args[8] @40, u64 tsc_khz @104`.
    static func parameterBlock(vcpuCount: Int, workload: TestGuestWorkload, memorySize: UInt64,
                               heap: Range<UInt64>, arguments: [UInt64]) -> [UInt8] {
        var writer = ByteWriter(count: 4096)
        writer.put(parameterMagic, at: 0)
        writer.put(parameterVersion, at: 4)
        writer.put(UInt32(vcpuCount), at: 8)
        writer.put(workload.rawValue, at: 12)
        writer.put(memorySize, at: 16)
        writer.put(heap.lowerBound, at: 24)
        writer.put(heap.upperBound, at: 32)
        for (index, argument) in arguments.prefix(argumentCount).enumerated() {
            writer.put(argument, at: 40 + index * 8)
        }
        return writer.bytes
    }
}

/// The workloads the test guest implements (`workload` in the parameter block).
public enum TestGuestWorkload: UInt32, Sendable, CaseIterable {
    /// The bootstrap vCPU prints a greeting and powers off with status 0.
    case hello = 0
    /// Every vCPU computes a checksum over its own memory slice and reports it; args[0] = bytes per vCPU.
    case vcpuReport = 1
    /// Writes a pattern at spread-out offsets across disk 0, flushes; args[0] = seed, args[1] = blocks.
    case diskWritePattern = 2
    /// Reads the pattern back and verifies it; same arguments as ``diskWritePattern``.
    case diskVerifyPattern = 3
    /// Sends malformed descriptor chains to disk 0 and checks the device's answers.
    case hostileDescriptors = 4
    /// Every vCPU fills and verifies args[0] bytes of its own memory with pattern args[1], at
    /// args[2] + index × args[0] (args[2] = 0: in the heap; may be above 4 GiB).
    case memoryFill = 5
    /// Sequential write then read of args[0] bytes in args[1]-byte requests, with markers 0x10–0x13.
    case diskThroughput = 6
    /// Every vCPU spins in guest code forever (the host must stop the VM).
    case spin = 7
    /// Tries the limits of disk 0 and the VMM as a hostile driver (`Tools/guest/hostile_limits.c`):
    /// buffers at the edges of RAM and in the 3–4 GiB hole, the 64 MiB transfer cap, mixed
    /// directions, DISCARD/WRITE_ZEROES, queue registers, rings outside RAM, and vCPU 1 racing the
    /// ring. Needs ≥ 3 GiB + 128 MiB of RAM, 2 vCPUs and a disk of ≥ 256 MiB.
    case hostileLimits = 8
    /// Writes numbered records to disk 0 (boot record at sector 0, a ring of records after it)
    /// until args[2] records are written (0: forever); args[0] = ring size, args[1] = flush every
    /// N records, args[3] = pause iterations between records. Layout in `Tools/guest/sequence.c`.
    case diskSequence = 9
    /// Random requests of one size over disk 0, args[2] per notify (markers 0x14/0x15):
    /// args[0] = requests, args[1] = bytes each, args[3] = seed, args[4] = 1 to write.
    case diskRandom = 10
    /// Every vCPU parks at once: a VM that runs and uses no CPU.
    case idle = 11
    /// Sends a tools heartbeat every args[0] pause iterations (default 2,000,000), and after
    /// args[1] heartbeats (0: never) stops and spins, as a hung guest.
    case heartbeat = 12
    /// An IPv4 host on NIC 0 (`Tools/guest/net.c`): answers ARP and ICMP echo, echoes UDP on a port
    /// and counts the stream it receives (sequence numbers). args[0] = own IPv4 as 0xAABBCCDD,
    /// args[1] = echo port (default 7), args[2] = print statistics every N datagrams. Runs until
    /// powered off; marker 0x40 once the NIC is up.
    case netResponder = 13
    /// Sends a UDP stream from NIC 0 (`{u64 sequence, u64 tsc}` then filler) and counts the
    /// datagrams echoed back: args[0] = own IPv4, args[1] = destination IPv4, args[2] = its port,
    /// args[3] = datagrams (0: forever), args[4] = payload bytes (16–1472), args[5] = pause
    /// iterations between datagrams, args[6] = flags (1 forge the source MAC, 2 ping first, 4 power
    /// off when done), args[7] = source port. Markers 0x41/0x42 around the stream.
    case udpSend = 14
    /// Memory that must survive migrations page for page (`Tools/guest/memory_generations.c`):
    /// writers fill their pages with per-page generations and verify every page after each
    /// change of the epoch port; with args[3] = 1 the last vCPU reports the largest gap it sees
    /// in a 1 ms TSC loop. args[0] = bytes per writer, args[1] = bytes/s per writer (0: unpaced),
    /// args[2] = passes (0: forever), args[4] = power off after this many verified migrations,
    /// args[5] = seed.
    case memoryGenerations = 15
}

/// Exit statuses of the test guest.
public enum TestGuestResult: UInt32, Sendable {
    case success = 0
    case failure = 1
    case badParameters = 2
    case noDevice = 3
    case deviceSetupFailed = 4
    case ioError = 5
    case verifyMismatch = 6
    case hostileCheckFailed = 7
    case timeout = 8
}
