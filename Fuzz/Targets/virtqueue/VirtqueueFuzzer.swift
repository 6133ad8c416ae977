// fuzz-virtqueue: a hostile guest driver against the legacy virtio-pci transport, the split
// virtqueue and virtio-blk, over real guest memory and an in-memory disk (no KVM needed).
//
// Input: guest memory of 1 MiB, or (flag) 3 GiB + 64 KiB whose second region starts at 4 GiB
// past the MMIO hole; then a script of driver actions (GuestDriver): register reads and writes
// (status, features, QUEUE_SEL, QUEUE_PFN, NOTIFY, out-of-range offsets), PCI configuration
// writes, bytes written anywhere in guest memory, descriptors, available-ring entries and
// request headers. Oracles: no trap or memory error; every buffer the device hands the disk is
// inside guest RAM and every disk access is inside the disk (CheckedDisk); per notify the disk
// does at most one queue's worth of requests of the advertised sizes.
@testable import Hypervisor
import FuzzSupport
import SystemSupport

/// The device's I/O threads (a VMM runs its disk requests off the vCPU thread), one pool for the
/// process.
private let ioThreads: WorkerPool = {
    do { return try WorkerPool(threads: 2, name: "fuzz-io") } catch { fatalError("cannot start the I/O threads: \(error)") }
}()

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    SeedFiles.writeIfAsked(VirtqueueSeeds.make)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let setup = input.byte()
    let memorySize: UInt64 = setup & 1 == 0 ? 1 << 20 : (3 << 30) + (64 << 10)
    guard let memory = try? GuestMemory(size: memorySize) else { fatalError("cannot map \(memorySize) bytes of guest memory") }
    let disk = CheckedDisk(memory: memory, sectors: setup & 2 == 0 ? 2048 : UInt64(input.integer(UInt16.self)) + 1,
                           readOnly: setup & 4 != 0)
    let queueSize: UInt16 = setup & 8 == 0 ? 16 : 256
    var driver = GuestDriver(memory: memory, device: VirtioPCILegacyDevice(
        model: VirtioBlock(backend: disk, queueSize: queueSize), memory: memory, ioBase: GuestDriver.ioBase,
        interruptLine: 10, interrupt: DisconnectedInterruptLine(), io: ioThreads), disk: disk)
    if setup & 16 == 0 { driver.initialize(features: setup & 32 == 0 ? nil : input.integer(UInt32.self)) }
    driver.run(&input)
    // Nothing may still use the guest memory this input maps (a reset also waits, but the
    // script need not end with one).
    guard driver.device.drain(deadline: nil) else { fatalError("fuzz oracle: requests in flight never completed") }
    return 0
}
