// fuzz-volume-image: mount, use, inspect and check a volume whose documented fields were rewritten.
//
// Input: an edit count (0–8) and mount mode (MountMode), that many structure edits (StructureEditor:
// structure, index, field, change, all re-sealed), then a script of file operations with extreme
// arguments (FileOperations).
// Per input, on a fresh copy of the seed volume in an image file:
//   1. fsck -n through a read-only guard (it must write nothing);
//   2. the inspectors behind `vmfs info/ls/hosts/locks/cat`, read-only too;
//   3. mount as a new host and recover the crashed host, or reclaim as the crashed host adopting its
//      file locks (and hand over to a next incarnation), run the script, unmount;
//   4. fsck -y; a repair that reports success must leave a volume that mounts, and without edits
//      (the healthy seed, its crashed host recovered) there must be nothing to repair at all.
// Every write is range-checked (`guarded`) and the image's size is checked after the input.
@testable import VMFSCore
import FuzzSupport
import VMFSTestSupport

private let seed = SeedVolume.shared
private let image = ImageFile(name: "volume-image", snapshot: seed.snapshot)

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    SeedFiles.writeIfAsked(VolumeImageSeeds.make)
    _ = seed.header
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let interruption = Watchdog.arm()
    defer { Watchdog.disarm() }
    let device = guarded(image.reset())
    let readOnly = guarded(device.base, writable: false)
    let first = input.byte()
    let edits = Int(first % 9)
    do {
        let editor = try StructureEditor(seed: seed, device: device)
        for _ in 0..<edits { editor.applyEdit(from: &input) }
    } catch {
        fatalError("the seed volume's header is unreadable: \(error)")
    }

    _ = check(readOnly, repair: false, interruption: interruption)
    inspect(readOnly, interruption: interruption)
    let disturbed = MountMode(firstByte: first).run(device: device, seed: seed, interruption: interruption) {
        FileOperations(volume: $0).run(&input)
    }
    let repair = check(device, repair: true, interruption: interruption)
    if !interruption.isRequested {
        if edits == 0 && !disturbed { RepairOracle.expectClean(repair, after: "file operations on the healthy seed volume") }
        RepairOracle.verify(repair, device: device, interruption: interruption)
    }
    image.checkSize()
    return 0
}

func check(_ device: any BlockDevice, repair: Bool, interruption: Interruption) -> CheckReport {
    var options = CheckOptions()
    options.repair = repair
    options.force = true
    options.interruption = interruption
    return VolumeChecker(device: device, options: options).run()
}

/// What `vmfs info`, `ls`, `hosts`, `locks` and `cat` read.
private func inspect(_ device: any BlockDevice, interruption: Interruption) {
    guard let inspector = try? VolumeInspector(device: device) else { return }
    let files = (try? inspector.files()) ?? []
    _ = try? inspector.statistics()
    _ = try? inspector.hosts(observeMilliseconds: 0, interruption: interruption)
    _ = try? inspector.locks()
    for file in files.prefix(16) {
        _ = try? inspector.contents(of: file.name, limit: 64 << 10)
        _ = try? inspector.lockIndex(ofFile: file.name)
    }
}
