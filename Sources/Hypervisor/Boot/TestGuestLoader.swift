/// Loads the freestanding test guest (an ELF image) and prepares every vCPU to enter it at CPL3.
enum TestGuestLoader {
    static let stackAlignment: UInt64 = 2 << 20

    static func load(imageFile: MappedFile, image: ELFImage, configuration: TestGuestConfiguration,
                     memory: GuestMemory, vcpuCount: Int, pciRoutes: [PCIInterruptRoute]) throws(HypervisorError) -> BootPlan {
        guard configuration.arguments.count <= TestGuestABI.argumentCount else {
            throw HypervisorError(.invalidConfiguration, "test guest takes at most \(TestGuestABI.argumentCount) arguments, got \(configuration.arguments.count)")
        }
        let range = image.physicalRange
        guard range.lowerBound >= TestGuestABI.imageMinimumAddress else {
            throw HypervisorError(.invalidImage, "\(imageFile.path): segment at 0x\(String(range.lowerBound, radix: 16)) is below 0x\(String(TestGuestABI.imageMinimumAddress, radix: 16)), where the VMM keeps its tables")
        }
        let lowEnd = LinuxLoader.lowMemoryEnd(memory)
        let stacksStart = (range.upperBound + stackAlignment - 1) / stackAlignment * stackAlignment
        let stacksEnd = stacksStart + UInt64(vcpuCount) * TestGuestABI.stackSize
        let heapStart = (stacksEnd + stackAlignment - 1) / stackAlignment * stackAlignment
        guard heapStart < lowEnd else {
            throw HypervisorError(.invalidConfiguration, "test guest image (up to 0x\(String(range.upperBound, radix: 16))) and \(vcpuCount) stacks need more than the \(lowEnd) bytes of low RAM")
        }
        try image.load(from: imageFile.bytes, into: memory, name: imageFile.path)
        try LongModeSetup.writeTables(into: memory, userAccessible: true)
        try memory.write(TestGuestABI.parameterBlock(vcpuCount: vcpuCount, workload: configuration.workload,
                                                     memorySize: memory.size, heap: heapStart..<lowEnd,
                                                     arguments: configuration.arguments),
                         at: TestGuestABI.parameterBlockAddress)
        // Also describe the machine as for Linux, so the guest could find it the PC way.
        try memory.write(try MPTable.build(cpuCount: vcpuCount, pciRoutes: pciRoutes, at: UInt32(LinuxLoader.mpTableAddress)),
                         at: LinuxLoader.mpTableAddress)
        var states: [Int: VCPUEntryState] = [:]
        for index in 0..<vcpuCount {
            let stackTop = stacksStart + UInt64(index + 1) * TestGuestABI.stackSize - 16
            states[index] = VCPUEntryState(instructionPointer: image.entry, stackPointer: stackTop, flags: 0x3002,
                                           arguments: (UInt64(index), TestGuestABI.parameterBlockAddress, UInt64(vcpuCount)))
        }
        return BootPlan(entryStates: states, userMode: true)
    }
}
