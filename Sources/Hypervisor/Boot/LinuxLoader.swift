/// Loads a Linux kernel for the x86-64 64-bit boot protocol: bzImage payload at 1 MiB (entry
/// +0x200) or `vmlinux` ELF segments at their physical addresses, the zero page, command line,
/// initrd, e820 map, MP table, GDT and identity-mapped page tables.
enum LinuxLoader {
    static let zeroPageAddress: UInt64 = 0x7000
    static let stackPointer: UInt64 = 0x8FF0
    static let commandLineAddress: UInt64 = 0x2_0000
    static let commandLineMaximum = 2048
    static let kernelLoadAddress: UInt64 = 0x10_0000
    static let mpTableAddress: UInt64 = E820Map.systemMemoryStart

    /// A kernel image parsed and validated before any guest memory exists.
    enum Kernel {
        case bzImage(BzImageHeader)
        case elf(ELFImage)
    }

    /// Identifies and validates the kernel image.
    static func parseKernel(_ file: MappedFile) throws(HypervisorError) -> Kernel {
        if ELFImage.hasELFMagic(file.bytes) {
            return .elf(try ELFImage(bytes: file.bytes, name: file.path))
        }
        if BzImageHeader.hasBzImageMagic(file.bytes) {
            return .bzImage(try BzImageHeader(bytes: file.bytes, name: file.path))
        }
        if file.bytes.count < 0x206 {
            throw HypervisorError(.invalidImage, "\(file.path): truncated: \(file.bytes.count) bytes is too small for a bzImage setup header or an ELF header")
        }
        throw HypervisorError(.invalidImage, "\(file.path): neither an ELF vmlinux (no magic at offset 0) nor a bzImage (no 0xaa55/\"HdrS\" at offsets 0x1fe/0x202)")
    }

    /// Lowest RAM end below 4 GiB.
    static func lowMemoryEnd(_ memory: GuestMemory) -> UInt64 {
        memory.regions.first.map(\.guestEnd) ?? 0
    }

    static func load(kernelFile: MappedFile, kernel: Kernel, initrdFile: MappedFile?, commandLine: String,
                     memory: GuestMemory, vcpuCount: Int, pciRoutes: [PCIInterruptRoute]) throws(HypervisorError) -> BootPlan {
        let lowEnd = lowMemoryEnd(memory)
        var zeroPage: ZeroPage
        let entry: UInt64
        var kernelEnd: UInt64
        var commandLineLimit = commandLineMaximum
        var initrdLimit: UInt64 = 0x7FFF_FFFF
        switch kernel {
        case .bzImage(let header):
            let payload = UnsafeRawBufferPointer(rebasing: kernelFile.bytes[header.setupSize...])
            let footprint = max(UInt64(payload.count), UInt64(header.initSize))
            guard kernelLoadAddress + footprint <= lowEnd else {
                throw HypervisorError(.invalidConfiguration, "\(kernelFile.path): kernel needs \(footprint) bytes (init_size) from 1 MiB but the guest has \(lowEnd) bytes of low RAM")
            }
            try memory.write(payload, at: kernelLoadAddress)
            zeroPage = ZeroPage(setupHeader: kernelFile.bytes, headerEnd: header.headerEnd)
            entry = kernelLoadAddress + 0x200
            kernelEnd = kernelLoadAddress + footprint
            if header.commandLineSize > 0 { commandLineLimit = min(commandLineLimit, Int(header.commandLineSize) + 1) }
            if header.initrdAddressMax > 0 { initrdLimit = UInt64(header.initrdAddressMax) }
        case .elf(let image):
            guard image.physicalRange.lowerBound >= kernelLoadAddress else {
                throw HypervisorError(.invalidImage, "\(kernelFile.path): segment at 0x\(String(image.physicalRange.lowerBound, radix: 16)) would overwrite the boot structures below 1 MiB")
            }
            guard image.physicalRange.upperBound <= lowEnd else {
                throw HypervisorError(.invalidConfiguration, "\(kernelFile.path): kernel occupies up to 0x\(String(image.physicalRange.upperBound, radix: 16)) but the guest has \(lowEnd) bytes of low RAM")
            }
            try image.load(from: kernelFile.bytes, into: memory, name: kernelFile.path)
            zeroPage = ZeroPage()
            entry = image.entry
            kernelEnd = image.physicalRange.upperBound
        }

        let commandLineBytes = Array(commandLine.utf8) + [0]
        guard commandLineBytes.count <= commandLineLimit else {
            throw HypervisorError(.invalidConfiguration, "kernel command line is \(commandLineBytes.count - 1) bytes; the kernel accepts at most \(commandLineLimit - 1)")
        }
        try memory.write(commandLineBytes, at: commandLineAddress)

        var initrd: (address: UInt32, size: UInt32)?
        if let initrdFile {
            let size = UInt64(initrdFile.bytes.count)
            let top = min(lowEnd, initrdLimit + 1)
            guard size < top, (top - size) & ~0xFFF >= kernelEnd else {
                throw HypervisorError(.invalidConfiguration, "\(initrdFile.path): initrd of \(size) bytes does not fit between the kernel end 0x\(String(kernelEnd, radix: 16)) and 0x\(String(top, radix: 16)); give the VM more memory")
            }
            let address = (top - size) & ~0xFFF
            try memory.write(initrdFile.bytes, at: address)
            initrd = (UInt32(address), UInt32(size))
        }

        zeroPage.setLoaderFields(commandLineAddress: UInt32(commandLineAddress),
                                 commandLineSize: UInt32(commandLineBytes.count), initrd: initrd)
        try zeroPage.setMemoryMap(E820Map.entries(for: memory.regions))
        try memory.write(zeroPage.bytes, at: zeroPageAddress)
        try memory.write(try MPTable.build(cpuCount: vcpuCount, pciRoutes: pciRoutes, at: UInt32(mpTableAddress)),
                         at: mpTableAddress)
        try LongModeSetup.writeTables(into: memory, userAccessible: false)
        let bootstrap = VCPUEntryState(instructionPointer: entry, stackPointer: stackPointer, flags: 0x2,
                                       arguments: (0, zeroPageAddress, 0))
        return BootPlan(entryStates: [0: bootstrap], userMode: false)
    }
}
