/// Constants of the machine-state format (`docs/VM-STATE.md`).
enum StateFormat {
    /// "VMSTATE\0".
    static let magic: [UInt8] = Array("VMSTATE".utf8) + [0]
    /// A reader refuses another major version; it reads a newer minor version, skipping section
    /// types it does not know.
    static let majorVersion: UInt16 = 1
    static let minorVersion: UInt16 = 0
    static let headerSize = 64
    static let sectionHeaderSize = 16
    /// Largest payload of one section (the XSAVE area is 4 KiB; a generous bound for the rest).
    static let maximumSectionLength = 1 << 20
    /// Most sections one state may have (every vCPU's eleven, plus the machine's).
    static let maximumSectionCount = 254 * 11 + 64
    static let maximumCPUIDLeaves = 256
    static let maximumMSRs = 1024
    static let maximumQueues = 64

    /// Section types, in the order a state lists (and a restore applies) them.
    enum Section: UInt16, CaseIterable {
        case cpuid = 0x0100
        case mpState = 0x0101
        case registers = 0x0102
        case specialRegisters = 0x0103
        case fpu = 0x0104
        case xsave = 0x0105
        case xcrs = 0x0106
        case debugRegisters = 0x0107
        case localAPIC = 0x0108
        case msrs = 0x0109
        case events = 0x010A
        case interruptChip = 0x0200
        case timer = 0x0201
        case clock = 0x0202
        case serial = 0x0300
        case keyboard = 0x0301
        case cmos = 0x0302
        case pciRoot = 0x0303
        case virtioDevice = 0x0400
        case end = 0xFFFF

        var name: String {
            switch self {
            case .cpuid: "CPUID"
            case .mpState: "MP state"
            case .registers: "registers"
            case .specialRegisters: "special registers"
            case .fpu: "FPU"
            case .xsave: "XSAVE"
            case .xcrs: "XCRs"
            case .debugRegisters: "debug registers"
            case .localAPIC: "local APIC"
            case .msrs: "MSRs"
            case .events: "vCPU events"
            case .interruptChip: "interrupt chip"
            case .timer: "PIT"
            case .clock: "kvmclock"
            case .serial: "UART"
            case .keyboard: "i8042"
            case .cmos: "CMOS"
            case .pciRoot: "PCI root"
            case .virtioDevice: "virtio device"
            case .end: "end"
            }
        }

        /// The vCPU sections, in restore order.
        static let perVCPU: [Section] = [.cpuid, .mpState, .registers, .specialRegisters, .fpu, .xsave, .xcrs, .debugRegisters,
                                         .localAPIC, .msrs, .events]
    }
}

/// Little-endian appends for encoding a state.
struct StateWriter {
    private(set) var bytes: [UInt8] = []

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func put(_ data: [UInt8]) { bytes.append(contentsOf: data) }

    mutating func zeros(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }
}

/// Bounds-checked little-endian reads of one section's payload; every error names the section.
struct StateReader {
    let bytes: ArraySlice<UInt8>
    let section: String
    private(set) var offset = 0

    init(_ bytes: ArraySlice<UInt8>, section: String) {
        self.bytes = bytes
        self.section = section
    }

    var remaining: Int { bytes.count - offset }

    mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ field: String) throws(HypervisorError) -> T {
        let raw = try take(MemoryLayout<T>.size, field)
        return raw.reversed().reduce(T.zero) { $0 << 8 | T($1) }
    }

    mutating func take(_ count: Int, _ field: String) throws(HypervisorError) -> [UInt8] {
        guard count >= 0, count <= remaining else {
            throw HypervisorError(.invalidSavedState, "\(section): \(field) needs \(count) bytes at offset \(offset); the section has \(bytes.count)")
        }
        let start = bytes.startIndex + offset
        offset += count
        return Array(bytes[start..<(start + count)])
    }

    func requireEnd() throws(HypervisorError) {
        guard remaining == 0 else {
            throw HypervisorError(.invalidSavedState, "\(section): \(remaining) unexpected bytes after offset \(offset)")
        }
    }
}
