extension UnsafeRawBufferPointer {
    /// True when every byte is zero.
    var isAllZeros: Bool {
        var index = 0
        while index + 8 <= count {
            if loadUnaligned(fromByteOffset: index, as: UInt64.self) != 0 { return false }
            index += 8
        }
        while index < count {
            if self[index] != 0 { return false }
            index += 1
        }
        return true
    }
}
