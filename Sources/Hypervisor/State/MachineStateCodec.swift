internal import CVMFSLinux

/// Encodes a ``MachineState`` into the versioned, checksummed format of `docs/VM-STATE.md`, and
/// decodes one, checking every length, count and checksum (the bytes may come from the network
/// or a file: hostile until checked).
public enum MachineStateCodec {
    /// The format version this build writes, as "major.minor".
    public static var version: String { "\(StateFormat.majorVersion).\(StateFormat.minorVersion)" }
    public static var majorVersion: Int { Int(StateFormat.majorVersion) }

    private typealias Section = StateFormat.Section

    // MARK: Encoding

    public static func encode(_ state: MachineState) -> [UInt8] {
        var sections: [(Section, Int, [UInt8])] = []
        for (index, vcpu) in state.vcpus.enumerated() {
            var cpuid = StateWriter()
            cpuid.put(UInt32(vcpu.cpuid.count))
            cpuid.put(UInt32(0))
            for leaf in vcpu.cpuid {
                for value in [leaf.function, leaf.index, leaf.flags, leaf.eax, leaf.ebx, leaf.ecx, leaf.edx] { cpuid.put(value) }
            }
            var msrs = StateWriter()
            msrs.put(UInt32(vcpu.msrs.count))
            msrs.put(UInt32(0))
            for msr in vcpu.msrs {
                msrs.put(msr.index)
                msrs.put(UInt32(0))
                msrs.put(msr.value)
            }
            var mp = StateWriter()
            mp.put(vcpu.mpState)
            sections += [
                (.cpuid, index, cpuid.bytes), (.mpState, index, mp.bytes), (.registers, index, vcpu.registers),
                (.specialRegisters, index, vcpu.specialRegisters), (.fpu, index, vcpu.fpu), (.xsave, index, vcpu.xsave),
                (.xcrs, index, vcpu.xcrs), (.debugRegisters, index, vcpu.debugRegisters), (.localAPIC, index, vcpu.localAPIC),
                (.msrs, index, msrs.bytes), (.events, index, vcpu.events),
            ]
        }
        for (chip, bytes) in state.interrupts.chips.enumerated() { sections.append((.interruptChip, chip, bytes)) }
        sections.append((.timer, 0, state.interrupts.timer))
        sections.append((.clock, 0, state.interrupts.clock))

        var serial = StateWriter()
        let s = state.serial
        for byte in [s.interruptEnable, s.lineControl, s.modemControl, s.scratch, s.divisorLow, s.divisorHigh, s.fifoControl,
                     s.transmitInterruptPending ? 1 : 0] { serial.put(byte) }
        serial.put(UInt16(s.receive.count))
        serial.put(UInt16(s.pendingOutput.count))
        serial.put(UInt32(0))
        serial.put(s.receive)
        serial.put(s.pendingOutput)
        sections.append((.serial, 0, serial.bytes))

        var keyboard = StateWriter()
        keyboard.put(state.keyboard.commandByte)
        keyboard.put(state.keyboard.pendingCommand)
        keyboard.put(UInt8(state.keyboard.output.count))
        keyboard.put(UInt8(0))
        keyboard.put(state.keyboard.output)
        sections.append((.keyboard, 0, keyboard.bytes))

        var cmos = StateWriter()
        cmos.put(state.cmos.index)
        cmos.zeros(7)
        cmos.put(state.cmos.storage)
        sections.append((.cmos, 0, cmos.bytes))

        var pci = StateWriter()
        pci.put(state.pciAddressLatch)
        pci.put(UInt32(0))
        sections.append((.pciRoot, 0, pci.bytes))

        for (index, device) in state.virtioDevices.enumerated() {
            var writer = StateWriter()
            writer.put(device.deviceType)
            writer.put(device.queueSelect)
            writer.put(device.status)
            writer.put(device.isr)
            writer.put(UInt16(device.queues.count))
            writer.put(device.guestFeatures)
            writer.put(UInt32(0))
            writer.put(device.configurationSpace)
            for queue in device.queues {
                writer.put(queue.pfn)
                writer.put(queue.lastAvailableIndex)
                writer.put(queue.usedIndex)
            }
            sections.append((.virtioDevice, index, writer.bytes))
        }
        sections.append((.end, 0, []))

        var body = StateWriter()
        for (type, instance, payload) in sections {
            body.put(type.rawValue)
            body.put(UInt16(instance))
            body.put(UInt32(payload.count))
            body.put(crc(payload[...]))
            body.put(UInt32(0))
            body.put(payload)
            body.zeros((8 - payload.count % 8) % 8)
        }

        var header = StateWriter()
        header.put(StateFormat.magic)
        header.put(StateFormat.majorVersion)
        header.put(StateFormat.minorVersion)
        header.put(UInt32(StateFormat.headerSize))
        header.put(UInt64(StateFormat.headerSize + body.bytes.count))
        header.put(UInt32(sections.count))
        header.put(UInt32(state.vcpuCount))
        header.put(state.memorySize)
        header.put(UInt32(state.diskCount))
        header.put(state.tscKilohertz)
        header.put(state.savedWallNanoseconds)
        header.put(state.restoreCount)
        header.put(crc(header.bytes[...]))
        return header.bytes + body.bytes
    }

    static func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { cvmfs_crc32c(0, $0.baseAddress, $0.count) }
    }

    // MARK: Decoding

    /// Decodes and checks a state.
    ///
    /// - Throws: ``HypervisorError/Code/incompatibleState`` for another major version (the message
    ///   names both), ``HypervisorError/Code/invalidSavedState`` naming the section and field that
    ///   is wrong: truncated, bad checksum, a count or size out of range, a missing or repeated section.
    public static func decode(_ bytes: [UInt8]) throws(HypervisorError) -> MachineState {
        guard bytes.count >= StateFormat.headerSize else {
            throw HypervisorError(.invalidSavedState, "the state is \(bytes.count) bytes; its header alone has \(StateFormat.headerSize)")
        }
        guard Array(bytes[0..<8]) == StateFormat.magic else {
            throw HypervisorError(.invalidSavedState, "the state does not start with the magic 'VMSTATE'")
        }
        var header = StateReader(bytes[8..<StateFormat.headerSize], section: "header")
        let major = try header.read(UInt16.self, "major version")
        let minor = try header.read(UInt16.self, "minor version")
        guard major == StateFormat.majorVersion else {
            throw HypervisorError(.incompatibleState, "the state has format version \(major).\(minor); this VMM reads version \(version) (major \(StateFormat.majorVersion) only)")
        }
        guard crc(bytes[0..<60]) == StateReader.word32(bytes, 60) else {
            throw HypervisorError(.invalidSavedState, "the state header's checksum does not match")
        }
        let headerSize = try header.read(UInt32.self, "header size")
        let total = try header.read(UInt64.self, "total length")
        let sectionCount = try header.read(UInt32.self, "section count")
        let vcpuCount = Int(try header.read(UInt32.self, "vCPU count"))
        let memorySize = try header.read(UInt64.self, "memory size")
        let diskCount = Int(try header.read(UInt32.self, "disk count"))
        let tsc = try header.read(UInt32.self, "TSC kHz")
        let savedWall = try header.read(Int64.self, "saved time")
        let restoreCount = try header.read(UInt32.self, "restore count")
        guard headerSize == StateFormat.headerSize else {
            throw HypervisorError(.invalidSavedState, "header size is \(headerSize); version \(major).x has \(StateFormat.headerSize)")
        }
        guard total == UInt64(bytes.count) else {
            throw HypervisorError(.invalidSavedState, "the header says \(total) bytes; \(bytes.count) are there")
        }
        guard (1...Int(VirtualMachineConfiguration.maximumVCPUCount)).contains(vcpuCount) else {
            throw HypervisorError(.invalidSavedState, "vCPU count \(vcpuCount) is outside 1…\(VirtualMachineConfiguration.maximumVCPUCount)")
        }
        guard diskCount <= VirtualMachineConfiguration.maximumDiskCount else {
            throw HypervisorError(.invalidSavedState, "disk count \(diskCount) exceeds \(VirtualMachineConfiguration.maximumDiskCount)")
        }
        guard memorySize >= VirtualMachineConfiguration.minimumMemorySize, memorySize <= VirtualMachineConfiguration.maximumMemorySize,
              memorySize % (2 << 20) == 0 else {
            throw HypervisorError(.invalidSavedState, "memory size \(memorySize) is not a valid machine size")
        }
        guard sectionCount <= UInt32(StateFormat.maximumSectionCount) else {
            throw HypervisorError(.invalidSavedState, "\(sectionCount) sections; at most \(StateFormat.maximumSectionCount)")
        }

        var payloads: [Section: [Int: ArraySlice<UInt8>]] = [:]
        var offset = StateFormat.headerSize
        var sawEnd = false
        for number in 0..<Int(sectionCount) {
            guard !sawEnd else { throw HypervisorError(.invalidSavedState, "section \(number) follows the end section") }
            guard bytes.count - offset >= StateFormat.sectionHeaderSize else {
                throw HypervisorError(.invalidSavedState, "section \(number) at offset \(offset): truncated header")
            }
            var reader = StateReader(bytes[offset..<(offset + StateFormat.sectionHeaderSize)], section: "section \(number) at offset \(offset)")
            let typeValue = try reader.read(UInt16.self, "type")
            let instance = Int(try reader.read(UInt16.self, "instance"))
            let length = Int(try reader.read(UInt32.self, "length"))
            let checksum = try reader.read(UInt32.self, "checksum")
            let reserved = try reader.read(UInt32.self, "reserved")
            let start = offset + StateFormat.sectionHeaderSize
            let padded = length + (8 - length % 8) % 8
            guard length <= StateFormat.maximumSectionLength, padded <= bytes.count - start else {
                throw HypervisorError(.invalidSavedState, "section \(number) (type 0x\(String(typeValue, radix: 16))) at offset \(offset): length \(length) runs past the end")
            }
            let payload = bytes[start..<(start + length)]
            guard bytes[(start + length)..<(start + padded)].allSatisfy({ $0 == 0 }) else {
                throw HypervisorError(.invalidSavedState, "section \(number) (type 0x\(String(typeValue, radix: 16))) at offset \(offset): padding after the payload is not zero")
            }
            offset = start + padded
            guard let type = Section(rawValue: typeValue) else {
                guard minor > StateFormat.minorVersion else {
                    throw HypervisorError(.invalidSavedState, "section \(number) at offset \(start - StateFormat.sectionHeaderSize) has unknown type 0x\(String(typeValue, radix: 16))")
                }
                continue  // a newer minor version's addition
            }
            let name = "\(type.name) section\(instance > 0 || Section.perVCPU.contains(type) ? " \(instance)" : "")"
            guard reserved == 0 else { throw HypervisorError(.invalidSavedState, "\(name): reserved field is \(reserved)") }
            guard crc(payload) == checksum else { throw HypervisorError(.invalidSavedState, "\(name): checksum does not match") }
            guard payloads[type]?[instance] == nil else { throw HypervisorError(.invalidSavedState, "\(name) appears twice") }
            payloads[type, default: [:]][instance] = payload
            if type == .end { sawEnd = true }
        }
        guard sawEnd else { throw HypervisorError(.invalidSavedState, "the state has no end section") }
        guard offset == bytes.count else {
            throw HypervisorError(.invalidSavedState, "\(bytes.count - offset) bytes after the last section")
        }

        func payload(_ type: Section, _ instance: Int = 0) throws(HypervisorError) -> StateReader {
            guard let bytes = payloads[type]?[instance] else {
                throw HypervisorError(.invalidSavedState, "the state has no \(type.name) section \(instance)")
            }
            return StateReader(bytes, section: "\(type.name) section \(instance)")
        }
        func raw(_ type: Section, _ instance: Int, size: Int) throws(HypervisorError) -> [UInt8] {
            var reader = try payload(type, instance)
            let value = try reader.take(size, "the \(size)-byte structure")
            try reader.requireEnd()
            return value
        }

        var vcpus: [VCPUState] = []
        for index in 0..<vcpuCount {
            var cpuidReader = try payload(.cpuid, index)
            let leafCount = Int(try cpuidReader.read(UInt32.self, "leaf count"))
            _ = try cpuidReader.read(UInt32.self, "reserved")
            guard leafCount <= StateFormat.maximumCPUIDLeaves else {
                throw HypervisorError(.invalidSavedState, "CPUID section \(index): \(leafCount) leaves; at most \(StateFormat.maximumCPUIDLeaves)")
            }
            var leaves: [CPUIDLeaf] = []
            for leaf in 0..<leafCount {
                var values: [UInt32] = []
                for field in 0..<7 { values.append(try cpuidReader.read(UInt32.self, "leaf \(leaf) word \(field)")) }
                leaves.append(CPUIDLeaf(function: values[0], index: values[1], flags: values[2], eax: values[3], ebx: values[4],
                                        ecx: values[5], edx: values[6]))
            }
            try cpuidReader.requireEnd()
            var mpReader = try payload(.mpState, index)
            let mp = try mpReader.read(UInt32.self, "mp_state")
            try mpReader.requireEnd()
            guard mp <= 8 else { throw HypervisorError(.invalidSavedState, "MP state section \(index): mp_state \(mp) is unknown") }
            var msrReader = try payload(.msrs, index)
            let msrCount = Int(try msrReader.read(UInt32.self, "MSR count"))
            _ = try msrReader.read(UInt32.self, "reserved")
            guard msrCount <= StateFormat.maximumMSRs else {
                throw HypervisorError(.invalidSavedState, "MSRs section \(index): \(msrCount) MSRs; at most \(StateFormat.maximumMSRs)")
            }
            var msrs: [MSRValue] = []
            for entry in 0..<msrCount {
                let msr = try msrReader.read(UInt32.self, "MSR \(entry) index")
                _ = try msrReader.read(UInt32.self, "MSR \(entry) reserved")
                msrs.append(MSRValue(index: msr, value: try msrReader.read(UInt64.self, "MSR \(entry) value")))
            }
            try msrReader.requireEnd()
            typealias Size = VCPUState.Size
            vcpus.append(VCPUState(
                cpuid: leaves, mpState: mp, registers: try raw(.registers, index, size: Size.registers),
                specialRegisters: try raw(.specialRegisters, index, size: Size.specialRegisters), fpu: try raw(.fpu, index, size: Size.fpu),
                xsave: try raw(.xsave, index, size: Size.xsave), xcrs: try raw(.xcrs, index, size: Size.xcrs),
                debugRegisters: try raw(.debugRegisters, index, size: Size.debugRegisters),
                localAPIC: try raw(.localAPIC, index, size: Size.localAPIC), msrs: msrs, events: try raw(.events, index, size: Size.events)))
        }
        for type in Section.perVCPU {
            if let extra = payloads[type]?.keys.first(where: { $0 >= vcpuCount }) {
                throw HypervisorError(.invalidSavedState, "\(type.name) section \(extra) names a vCPU the machine (\(vcpuCount) vCPUs) does not have")
            }
        }
        typealias ChipSize = InterruptControllerState.Size
        var chips: [[UInt8]] = []
        for chip in 0..<3 { chips.append(try raw(.interruptChip, chip, size: ChipSize.chip)) }
        let interrupts = InterruptControllerState(chips: chips, timer: try raw(.timer, 0, size: ChipSize.timer),
                                                  clock: try raw(.clock, 0, size: ChipSize.clock))

        var serialReader = try payload(.serial)
        var registers: [UInt8] = []
        for field in ["IER", "LCR", "MCR", "SCR", "DLL", "DLM", "FCR", "THRE pending"] { registers.append(try serialReader.read(UInt8.self, field)) }
        let receiveCount = Int(try serialReader.read(UInt16.self, "receive count"))
        let outputCount = Int(try serialReader.read(UInt16.self, "output count"))
        _ = try serialReader.read(UInt32.self, "reserved")
        guard receiveCount <= Serial16550.inputCapacity, outputCount <= Serial16550.outputChunk else {
            throw HypervisorError(.invalidSavedState, "UART section: \(receiveCount) input and \(outputCount) output bytes; at most \(Serial16550.inputCapacity) and \(Serial16550.outputChunk)")
        }
        let serial = SerialState(interruptEnable: registers[0], lineControl: registers[1], modemControl: registers[2], scratch: registers[3],
                                 divisorLow: registers[4], divisorHigh: registers[5], fifoControl: registers[6],
                                 transmitInterruptPending: registers[7] != 0, receive: try serialReader.take(receiveCount, "input"),
                                 pendingOutput: try serialReader.take(outputCount, "output"))
        try serialReader.requireEnd()

        var keyboardReader = try payload(.keyboard)
        let commandByte = try keyboardReader.read(UInt8.self, "command byte")
        let pendingCommand = try keyboardReader.read(UInt8.self, "pending command")
        let keyboardOutput = Int(try keyboardReader.read(UInt8.self, "output count"))
        _ = try keyboardReader.read(UInt8.self, "reserved")
        guard keyboardOutput <= I8042Controller.outputCapacity else {
            throw HypervisorError(.invalidSavedState, "i8042 section: \(keyboardOutput) reply bytes; at most \(I8042Controller.outputCapacity)")
        }
        let keyboard = KeyboardControllerState(commandByte: commandByte, pendingCommand: pendingCommand,
                                               output: try keyboardReader.take(keyboardOutput, "replies"))
        try keyboardReader.requireEnd()

        var cmosReader = try payload(.cmos)
        let cmosIndex = try cmosReader.read(UInt8.self, "index")
        _ = try cmosReader.take(7, "reserved")
        let cmos = CMOSState(index: cmosIndex & 0x7F, storage: try cmosReader.take(128, "storage"))
        try cmosReader.requireEnd()

        var pciReader = try payload(.pciRoot)
        let latch = try pciReader.read(UInt32.self, "address latch")
        _ = try pciReader.read(UInt32.self, "reserved")
        try pciReader.requireEnd()

        var devices: [VirtioDeviceState] = []
        for index in 0..<diskCount {
            var reader = try payload(.virtioDevice, index)
            let deviceType = try reader.read(UInt16.self, "device type")
            let queueSelect = try reader.read(UInt16.self, "queue select")
            let status = try reader.read(UInt8.self, "status")
            let isr = try reader.read(UInt8.self, "ISR")
            let queueCount = Int(try reader.read(UInt16.self, "queue count"))
            let features = try reader.read(UInt32.self, "guest features")
            _ = try reader.read(UInt32.self, "reserved")
            guard queueCount <= StateFormat.maximumQueues else {
                throw HypervisorError(.invalidSavedState, "virtio device section \(index): \(queueCount) queues; at most \(StateFormat.maximumQueues)")
            }
            let space = try reader.take(PCIConfigurationSpace.size, "configuration space")
            var queues: [VirtioDeviceState.Queue] = []
            for queue in 0..<queueCount {
                queues.append(VirtioDeviceState.Queue(pfn: try reader.read(UInt32.self, "queue \(queue) PFN"),
                                                      lastAvailableIndex: try reader.read(UInt16.self, "queue \(queue) last available"),
                                                      usedIndex: try reader.read(UInt16.self, "queue \(queue) used index")))
            }
            try reader.requireEnd()
            devices.append(VirtioDeviceState(deviceType: deviceType, configurationSpace: space, guestFeatures: features,
                                             queueSelect: queueSelect, status: status, isr: isr, queues: queues))
        }
        if let extra = payloads[.virtioDevice]?.keys.first(where: { $0 >= diskCount }) {
            throw HypervisorError(.invalidSavedState, "virtio device section \(extra) names a disk the machine (\(diskCount) disks) does not have")
        }
        return MachineState(vcpuCount: vcpuCount, memorySize: memorySize, diskCount: diskCount, tscKilohertz: tsc,
                            restoreCount: restoreCount, savedWallNanoseconds: savedWall, vcpus: vcpus, interrupts: interrupts,
                            serial: serial, keyboard: keyboard, cmos: cmos, pciAddressLatch: latch, virtioDevices: devices)
    }
}

extension StateReader {
    static func word32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }
}
