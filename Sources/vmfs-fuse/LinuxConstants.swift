/// Linux constants that Swift's Glibc module does not show (they are `_GNU_SOURCE`-only or live
/// in `<linux/…>` headers). Values from the kernel UAPI; they never change.
enum LinuxConstants {
    // renameat2(2) flags
    static let renameNoReplace: UInt32 = 1
    static let renameExchange: UInt32 = 2

    // fallocate(2) modes
    static let fallocKeepSize: Int32 = 0x01
    static let fallocPunchHole: Int32 = 0x02
    static let fallocZeroRange: Int32 = 0x10

    // lseek(2) whence
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    // open(2) flag
    static let oDirect: Int32 = 0o40000

    // statvfs f_flag
    static let statReadOnly: UInt = 1
}
