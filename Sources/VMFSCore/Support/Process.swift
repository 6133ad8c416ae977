#if canImport(Glibc)
internal import Glibc
#endif

/// This process's ID.
func processID() -> Int32 { getpid() }
