// fuzz-vm-files: the files of a VM that vmctl reads from a datastore — `.vmx` configurations,
// `.vmdk` descriptors, and the kernel or test-guest images they name (bzImage and ELF headers,
// and loading an ELF image into guest memory).
//
// Input: a selector byte, then the file's bytes. Oracles: no trap or memory error; whatever a
// parser accepts survives a round trip (a parsed .vmx written out parses to the same entries,
// a definition read from it writes a .vmx that reads back to the same definition, a descriptor
// likewise); an accepted ELF image loads into 16 MiB of guest memory or is refused, never
// written outside it.
@testable import Hypervisor
import VMManagement
import FuzzSupport

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    SeedFiles.writeIfAsked(VMFilesSeeds.make)
    return 0
}

private let guestMemory: GuestMemory = {
    do { return try GuestMemory(size: 16 << 20) } catch { fatalError("cannot map guest memory: \(error)") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let selector = input.byte() % 4
    let bytes = input.rest()
    switch selector {
    case 0: configuration(String(decoding: bytes, as: UTF8.self))
    case 1: descriptor(String(decoding: bytes, as: UTF8.self))
    case 2: bytes.withUnsafeBytes { _ = try? BzImageHeader(bytes: $0, name: "fuzz.bzImage") }
    default: elf(bytes)
    }
    return 0
}

private func configuration(_ text: String) {
    guard let file = try? VMXFile(parsing: text, fileName: "fuzz.vmx") else { return }
    let again: VMXFile
    do { again = try VMXFile(parsing: file.text, fileName: "fuzz.vmx") } catch {
        fatalError("fuzz oracle: a parsed .vmx written out does not parse: \(error)")
    }
    guard again == file else { fatalError("fuzz oracle: a .vmx does not survive writing and parsing") }
    guard let definition = try? VirtualMachineDefinition(vmx: file, fileName: "fuzz.vmx") else { return }
    let written = definition.vmx
    do {
        let reread = try VirtualMachineDefinition(vmx: try VMXFile(parsing: written.text, fileName: "fuzz.vmx"), fileName: "fuzz.vmx")
        guard reread == definition else { fatalError("fuzz oracle: a VM definition does not survive its own .vmx") }
    } catch {
        fatalError("fuzz oracle: the .vmx of an accepted definition is refused: \(error)")
    }
}

private func descriptor(_ text: String) {
    guard let parsed = try? VMDKDescriptor(parsing: text, fileName: "fuzz.vmdk") else { return }
    do {
        let reread = try VMDKDescriptor(parsing: parsed.text, fileName: "fuzz.vmdk")
        guard reread.byteCount == parsed.byteCount, reread.extentFileName == parsed.extentFileName else {
            fatalError("fuzz oracle: a .vmdk descriptor does not survive writing and parsing")
        }
    } catch {
        fatalError("fuzz oracle: an accepted .vmdk written out is refused: \(error)")
    }
}

private func elf(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        guard let image = try? ELFImage(bytes: raw, name: "fuzz.elf") else { return }
        _ = image.physicalRange
        try? image.load(from: raw, into: guestMemory, name: "fuzz.elf")
    }
}
