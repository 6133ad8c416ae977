@testable import VMFSCore
import VMFSTestSupport

/// The replay oracle: `base` behind a hook through which replay may write only whole sectors at
/// journaled home addresses (name table, descriptors, bitmaps, pointer blocks) or their mirrors,
/// and never zero or discard anything.
func homeOnly(_ base: any BlockDevice, layout: VolumeLayout) -> WriteHookDevice {
    WriteHookDevice(base) { change, offset, length in
        let home = JournalReplay.primary(ofMirror: offset, layout: layout)
        guard change == .write, length == UInt64(FormatConstants.sectorSize), layout.isJournaledHome(home) else {
            fatalError("fuzz oracle: replay's \(change) of \(length) bytes at \(offset) is not a journaled home sector or its mirror")
        }
    }
}
