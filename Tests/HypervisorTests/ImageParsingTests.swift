import Foundation
import Testing
@testable import Hypervisor

/// Builds a minimal ELF64 x86-64 executable with one PT_LOAD segment.
func makeELF(entry: UInt64 = 0x10_0000, physicalAddress: UInt64 = 0x10_0000, payload: [UInt8] = [0x90, 0xC3],
             memorySize: UInt64? = nil, machine: UInt16 = 0x3E) -> [UInt8] {
    var writer = ByteWriter(count: 64 + 56 + payload.count)
    writer.put(ELFImage.magic, at: 0)
    writer.put(UInt8(2), at: 4)           // 64-bit
    writer.put(UInt8(1), at: 5)           // little-endian
    writer.put(UInt8(1), at: 6)           // version
    writer.put(UInt16(2), at: 16)         // ET_EXEC
    writer.put(machine, at: 18)
    writer.put(UInt32(1), at: 20)
    writer.put(entry, at: 24)
    writer.put(UInt64(64), at: 32)        // e_phoff
    writer.put(UInt16(64), at: 52)        // e_ehsize
    writer.put(UInt16(56), at: 54)        // e_phentsize
    writer.put(UInt16(1), at: 56)         // e_phnum
    writer.put(UInt32(1), at: 64)         // PT_LOAD
    writer.put(UInt32(5), at: 68)
    writer.put(UInt64(120), at: 72)       // p_offset
    writer.put(physicalAddress, at: 80)   // p_vaddr
    writer.put(physicalAddress, at: 88)   // p_paddr
    writer.put(UInt64(payload.count), at: 96)
    writer.put(memorySize ?? UInt64(payload.count) + 4096, at: 104)
    writer.put(payload, at: 120)
    return writer.bytes
}

/// Builds a synthetic bzImage: setup sectors, a valid setup header, and a payload.
func makeBzImage(version: UInt16 = 0x020F, extendedLoadFlags: UInt16 = 0x7F, payloadSize: Int = 4096) -> [UInt8] {
    let setupSectors = 4
    var writer = ByteWriter(count: (setupSectors + 1) * 512 + payloadSize)
    writer.put(UInt8(setupSectors), at: 0x1F1)
    writer.put(UInt16(0xAA55), at: 0x1FE)
    writer.put(UInt8(0x6A), at: 0x201)    // header ends at 0x26C
    writer.put(UInt32(0x5372_6448), at: 0x202)
    writer.put(version, at: 0x206)
    writer.put(UInt8(0x01), at: 0x211)
    writer.put(UInt32(0x7FFF_FFFF), at: 0x22C)
    writer.put(UInt32(0x20_0000), at: 0x230)
    writer.put(extendedLoadFlags, at: 0x236)
    writer.put(UInt32(0x7FF), at: 0x238)
    writer.put(UInt32(0), at: 0x248)
    writer.put(UInt32(payloadSize), at: 0x24C)
    writer.put(UInt64(0x100_0000), at: 0x258)
    writer.put(UInt32(0x40_0000), at: 0x260)
    return writer.bytes
}

@Suite("Kernel and guest image parsing (no KVM needed)")
struct ImageParsingTests {
    func parseELF(_ bytes: [UInt8]) throws(HypervisorError) -> ELFImage {
        var result: Result<ELFImage, HypervisorError> = .failure(HypervisorError(.invalidImage, "unset"))
        bytes.withUnsafeBytes { raw in
            result = Result { () throws(HypervisorError) in try ELFImage(bytes: raw, name: "test.elf") }
        }
        return try result.get()
    }

    func parseBzImage(_ bytes: [UInt8]) throws(HypervisorError) -> BzImageHeader {
        var result: Result<BzImageHeader, HypervisorError> = .failure(HypervisorError(.invalidImage, "unset"))
        bytes.withUnsafeBytes { raw in
            result = Result { () throws(HypervisorError) in try BzImageHeader(bytes: raw, name: "bzImage") }
        }
        return try result.get()
    }

    func expectImageError(_ body: () throws -> Void, mentions fragments: [String]) {
        do {
            try body()
            Issue.record("expected an invalidImage error mentioning \(fragments)")
        } catch let error as HypervisorError {
            #expect(error.code == .invalidImage)
            for fragment in fragments { #expect(error.message.contains(fragment), "\(error.message)") }
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func parsesAMinimalELF() throws {
        let image = try parseELF(makeELF())
        #expect(image.entry == 0x10_0000)
        #expect(image.segments.count == 1)
        #expect(image.segments[0].fileOffset == 120 && image.segments[0].fileSize == 2)
        #expect(image.physicalRange == 0x10_0000..<(0x10_0000 + 2 + 4096))
    }

    @Test func translatesAVirtualEntryPoint() throws {
        var bytes = makeELF(entry: 0xFFFF_FFFF_8100_0010)
        var writer = ByteWriter(count: bytes.count)
        writer.put(bytes, at: 0)
        writer.put(UInt64(0xFFFF_FFFF_8100_0000), at: 80)  // p_vaddr
        bytes = writer.bytes
        #expect(try parseELF(bytes).entry == 0x10_0010)
    }

    @Test func rejectsCorruptAndTruncatedELF() {
        expectImageError({ _ = try parseELF(Array(makeELF().prefix(40))) }, mentions: ["test.elf", "truncated"])
        var badMagic = makeELF()
        badMagic[1] = 0x00
        expectImageError({ _ = try parseELF(badMagic) }, mentions: ["test.elf", "magic", "offset 0"])
        expectImageError({ _ = try parseELF(makeELF(machine: 0x28)) }, mentions: ["e_machine", "offset 18"])
        expectImageError({ _ = try parseELF(Array(makeELF().prefix(121))) }, mentions: ["truncated", "segment 0"])
        expectImageError({ _ = try parseELF(makeELF(memorySize: 1)) }, mentions: ["p_filesz"])
        expectImageError({ _ = try parseELF(makeELF(entry: 0x50_0000)) }, mentions: ["e_entry", "outside"])
    }

    @Test func parsesABzImageHeader() throws {
        let header = try parseBzImage(makeBzImage())
        #expect(header.version == 0x020F)
        #expect(header.setupSectors == 4 && header.setupSize == 2560)
        #expect(header.headerEnd == 0x26C)
        #expect(header.initSize == 0x40_0000)
        #expect(header.commandLineSize == 0x7FF)
    }

    @Test func rejectsBadBzImages() {
        expectImageError({ _ = try parseBzImage(makeBzImage(version: 0x0206)) }, mentions: ["bzImage", "0x206", "2.12"])
        expectImageError({ _ = try parseBzImage(makeBzImage(extendedLoadFlags: 0)) }, mentions: ["XLF_KERNEL_64"])
        expectImageError({ _ = try parseBzImage(Array(makeBzImage().prefix(0x240))) }, mentions: ["truncated"])
        expectImageError({ _ = try parseBzImage(Array(makeBzImage().prefix(3000))) }, mentions: ["truncated", "payload"])
        var badFlag = makeBzImage()
        badFlag[0x1FE] = 0
        expectImageError({ _ = try parseBzImage(badFlag) }, mentions: ["boot_flag", "0x1fe"])
    }

    @Test func parsesTheRealDebianKernelAndTestGuest() throws {
        let guest = try GuestArtifacts.testGuest()
        let guestBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: guest)))
        let image = try parseELF(guestBytes)
        #expect(image.entry == TestGuestABI.imageMinimumAddress)
        let kernel = GuestArtifacts.path("vmlinuz")
        guard FileManager.default.fileExists(atPath: kernel) else { return }  // covered by the KVM boot test
        let header = try parseBzImage([UInt8](Data(contentsOf: URL(fileURLWithPath: kernel))))
        #expect(header.version >= 0x020C)
        #expect(header.extendedLoadFlags & 1 == 1)
        #expect(header.kernelAlignment == 0x20_0000)
    }
}
