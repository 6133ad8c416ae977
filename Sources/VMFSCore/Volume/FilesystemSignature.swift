/// Recognises what already lives on a device, so `mkfs.vmfs` never overwrites it by accident.
public enum FilesystemSignature {
    /// A description of the filesystem or volume found on `device`, or `nil` when none is found.
    public static func detect(_ device: any BlockDevice) throws(VMFSError) -> String? {
        let probeSize = Int(min(device.size, 128 * 1024))
        guard probeSize >= 4096 else { return nil }
        let head = try device.read(count: probeSize, at: 0)
        func bytes(_ offset: Int, _ count: Int) -> [UInt8]? {
            offset + count <= head.count ? Array(head[offset..<(offset + count)]) : nil
        }
        func ascii(_ offset: Int, _ text: String) -> Bool { bytes(offset, text.utf8.count) == Array(text.utf8) }
        if ascii(0, "VMFS-SW") {
            let label = ByteReader(head).string(at: 32, width: 127) ?? ""
            return "a VMFS volume" + (label.isEmpty ? "" : " labelled '\(label)'")
        }
        if let magic = bytes(1080, 2), magic == [0x53, 0xEF] {
            let compat = ByteReader(head).u32(1024 + 0x5C)
            let incompat = ByteReader(head).u32(1024 + 0x60)
            if incompat & 0x40 != 0 || incompat & 0x200 != 0 { return "an ext4 filesystem" }
            return compat & 0x4 != 0 ? "an ext3 filesystem" : "an ext2 filesystem"
        }
        if ascii(0, "XFSB") { return "an XFS filesystem" }
        if ascii(65536 + 64, "_BHRfS_M") { return "a btrfs filesystem" }
        if ascii(4096 - 10, "SWAPSPACE2") || ascii(4096 - 10, "SWAP-SPACE") { return "a swap area" }
        if ascii(0, "LUKS\u{BA}\u{BE}") { return "a LUKS encrypted volume" }
        // VMware's own VMFS: LVM header magic 0xC001D00D at 1 MiB, or an MBR partition of type 0xFB.
        if device.size > 0x100000 + 4 {
            let lvm = try device.read(count: 4096, at: 0x100000)
            if ByteReader(lvm).u32(0) == 0xC001_D00D { return "a VMware VMFS volume" }
        }
        if head[510] == 0x55 && head[511] == 0xAA {
            for entry in 0..<4 {
                let type = head[446 + entry * 16 + 4]
                if type == 0xFB { return "a VMware VMFS partition (MBR type 0xFB)" }
                if type == 0xEE { return "a GPT partition table" }
                if type != 0 { return "an MBR partition table" }
            }
        }
        return nil
    }
}
