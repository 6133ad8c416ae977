import Testing
@testable import VMFSCore

@Test func probeTiming() throws {
    let device = try makeMemoryVolume()
    var t = Clock.monotonicNanoseconds
    func lap(_ what: String) { let n = Clock.monotonicNanoseconds; print("\(what): \((n - t) / 1_000_000) ms"); t = n }
    let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
    lap("mount")
    try volume.create("a")
    lap("create")
    try volume.create("b")
    lap("create2")
    let h = try volume.open("a", access: .readWrite)
    lap("open")
    try h.write(bytes: pattern(3 << 20, seed: 1), at: 0)
    lap("write")
    let before = try volume.statistics().freeBlocks
    lap("stats")
    try h.punchHole(offset: 1 << 20, length: 1 << 20)
    lap("punch")
    try h.sync()
    lap("sync")
    print("free before \(before) after \(try volume.statistics().freeBlocks)")
    try h.close()
    lap("close")
    try volume.unmount()
    lap("unmount")
}
