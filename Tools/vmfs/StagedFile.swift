import Glibc
import VMFSCore

/// Writes a new file on the volume under a temporary name and renames it into place only once
/// it is complete and synced, so that a failed or interrupted command never leaves an empty or
/// half-written file under the real name, and `--force` replaces the old file in one atomic
/// rename instead of deleting it first.
enum StagedFile {
    /// Creates `name` with `attributes`, lets `fill` write it, and renames it into place.
    ///
    /// - Parameter replace: Replace an existing `name` (atomically); otherwise an existing
    ///   `name` is refused before anything is created.
    /// - Throws: Whatever `fill` throws, or the volume's error; the temporary file is removed.
    static func create(_ name: String, on volume: Volume, attributes: CreateAttributes = CreateAttributes(),
                       replace: Bool, fill: (FileHandle) throws -> Void) throws {
        if let error = FileName.validationError(name) { throw error }
        if !replace, (try? volume.status(of: name)) != nil {
            throw VMFSError(.alreadyExists, "'\(name)' exists on the volume (--force replaces it)")
        }
        let temporary = ".vmfs-staging-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        let handle: FileHandle
        do throws(VMFSError) {
            handle = try volume.create(temporary, attributes: attributes, access: .readWrite)
        } catch {
            guard error.code == .tooManyFiles else { throw error }
            throw VMFSError(.tooManyFiles, "\(error.message) (the copy needs one free name until it is renamed to '\(name)')")
        }
        do {
            try fill(handle)
            try handle.sync()
            try handle.close()
            try volume.rename(temporary, to: name, mode: replace ? .replace : .noReplace)
        } catch {
            try? handle.close()
            try? volume.remove(temporary)
            throw error
        }
    }
}
