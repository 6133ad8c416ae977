// fuzz-fuse-operations: vmfs-fuse's operation layer driven by FUSE requests, without a kernel
// mount: the daemon's own library (VMFSFuse, Sources/vmfs-fuse, through @testable import),
// its own libfuse operation table and a real libfuse session,
// fed kernel messages with fuse_session_process_buf and answering through custom I/O.
//
// Input: INIT flags (writeback cache or not, read-only mount or not), then a script of requests
// (FuseScript): LOOKUP, GETATTR, SETATTR (sizes and times at the edges), CREATE, OPEN, READ and
// WRITE at offsets up to 2^64 − 1, FALLOCATE (every mode bit), LSEEK (SEEK_DATA/SEEK_HOLE),
// COPY_FILE_RANGE, RENAME/RENAME2, UNLINK, READDIR(PLUS), FSYNC, FLUSH, RELEASE, STATFS, the
// refused ones (MKDIR, MKNOD, SYMLINK, LINK, RMDIR), names of any bytes and lengths, node ids
// the daemon gave out or made up. The volume is a copy of the seed volume with its crashed host.
// Oracles: no trap or memory error; every request but FORGET answered exactly once with a
// well-formed reply; nothing written outside the device; the daemon still answers afterwards;
// after unmounting, fsck finds the volume consistent.
internal import CFuse
@testable internal import VMFSFuse
internal import VMFSCore
import FuzzSupport
import VMFSTestSupport

private let seed = SeedVolume.shared

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    SeedFiles.writeIfAsked(FuseSeeds.make)
    Log.setVerbose(false)
    _ = seed.header
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let setup = input.byte()
    let interruption = Watchdog.arm()
    defer { Watchdog.disarm() }
    let device = guarded(seed.snapshot.memoryDevice())
    var options = SeedVolume.mountOptions("fuse-host", interruption: interruption)
    options.readOnly = setup & 2 != 0
    guard let volume = try? Volume.mount(device: device, options: options) else { return 0 }
    if setup & 4 == 0 { _ = try? volume.recover(slot: seed.crashedSlot, force: true) }
    // The daemon's own command line, so that the options handed to libfuse are the real ones.
    var mountOptions = ["host_id=fuse-host", "lock_wait_ms=0", setup & 1 == 0 ? "writeback_cache" : "no_writeback_cache"]
    if options.readOnly { mountOptions.append("ro") }
    guard case .mount(let configuration)? = try? CommandLineParser.parse(["/dev/fuzz", "/fuzz", "-o", mountOptions.joined(separator: ",")],
                                                                          workingDirectory: "/") else {
        fatalError("vmfs-fuse refuses the harness's command line")
    }
    let fileSystem = FileSystem(volume: volume, configuration: configuration)
    withExtendedLifetime(fileSystem) {
        guard let kernel = FuseKernel(fileSystem: fileSystem, options: configuration.fuseOptions) else { fatalError("cannot create a libfuse session") }
        kernel.send(.initialize, node: 0, FuseMessage.initialize(flags: FuseMessage.offeredFlags))
        var script = FuseScript(kernel: kernel)
        script.run(&input)
        script.releaseEverything()
        guard kernel.send(.statfs, node: 1, []) != nil || interruption.isRequested else {
            fatalError("fuzz oracle: the daemon no longer answers STATFS after the script")
        }
        kernel.destroy()
        fileSystem.closeAll()
    }
    var disturbed = volume.eventLog.contains { $0.hasPrefix("lost heartbeat slot") }
    do { try volume.unmount() } catch { disturbed = disturbed || SeedVolume.isDisturbance(error) }
    // Whatever a kernel asked, the volume stays consistent (the crashed host's leftovers are
    // only repaired when it was recovered).
    if setup & 4 == 0 && !disturbed && !interruption.isRequested {
        var check = CheckOptions()
        check.force = true
        check.interruption = interruption
        let report = VolumeChecker(device: guarded(device.base, writable: false), options: check).run()
        guard report.exitCode == 0 || interruption.isRequested else {
            fatalError("fuzz oracle: fsck after FUSE requests exits \(report.exitCode): \(report.problems.prefix(4)) \(report.operationalError ?? "")")
        }
    }
    return 0
}
