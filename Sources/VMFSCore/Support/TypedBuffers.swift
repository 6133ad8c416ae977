/// `withUnsafeBytes` for bodies with typed throws (the standard library's are untyped `rethrows`).
func withBytes<T>(of bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(VMFSError) -> T) throws(VMFSError) -> T {
    var result: Result<T, VMFSError>?
    bytes.withUnsafeBytes { raw in result = Result { () throws(VMFSError) -> T in try body(raw) } }
    return try result!.get()
}

/// `withUnsafeMutableBytes` for bodies with typed throws.
func withMutableBytes<T>(of bytes: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws(VMFSError) -> T) throws(VMFSError) -> T {
    var result: Result<T, VMFSError>?
    bytes.withUnsafeMutableBytes { raw in result = Result { () throws(VMFSError) -> T in try body(raw) } }
    return try result!.get()
}
