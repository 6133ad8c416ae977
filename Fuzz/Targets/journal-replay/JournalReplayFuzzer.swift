// fuzz-journal-replay: journal scan and replay of a journal built from fuzz input.
//
// Input: a journal header (start sequence, sealed or not), then up to six transactions, each with
// a sequence (the expected next one, or any), a checkpointed-through value, and up to eight
// records whose home is a sector the seed wrote (a descriptor, name-table sector, bitmap or
// pointer block) or any address, whose image is that home's sector with one documented field
// edited and a version, all sealed and covered by a correct commit checksum unless the input
// says otherwise (JournalBuilder). The journal replaces the crashed host's in a copy of the seed
// volume. Then:
//   1. fsck -n replays it into its overlay and checks the result (writing nothing);
//   2. the journal is scanned and replayed onto the device: every sector replay writes must be
//      a journaled home or its mirror, and nothing outside the device.
@testable import VMFSCore
import FuzzSupport

private let seed = SeedVolume.shared

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    SeedFiles.writeIfAsked(JournalSeeds.make)
    _ = seed.header
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let interruption = Watchdog.arm()
    defer { Watchdog.disarm() }
    let memory = seed.snapshot.memoryDevice()
    let layout = seed.header.layout
    let volumeID = seed.header.volumeID
    let slot = seed.crashedSlot
    let journal = JournalBuilder(seed: seed).build(&input)
    do {
        try memory.zero(offset: layout.journal(slot), length: layout.journalSize)
        try memory.write(bytes: journal, at: layout.journal(slot))
    } catch {
        fatalError("writing the journal into the copy failed: \(error)")
    }

    var options = CheckOptions()
    options.force = true
    options.interruption = interruption
    _ = VolumeChecker(device: guarded(memory.readOnlyView(), writable: false), options: options).run()

    let device = homeOnly(guarded(memory), layout: layout)
    guard let scan = try? JournalReplay.scan(device: device, layout: layout, volumeID: volumeID, slot: slot) else { return 0 }
    _ = scan.nextSequence
    _ = try? JournalReplay.replay(scan, device: device, layout: layout, volumeID: volumeID)
    return 0
}
