import FuzzSupport

/// A script of FUSE requests decoded from fuzz input (see FuseOperationsFuzzer.swift).
struct FuseScript {
    let kernel: FuseKernel
    static let maximumRequests = 40
    /// The largest READ or WRITE a kernel sends (max_read = max_write = 1 MiB).
    static let maximumTransfer: UInt64 = 1 << 20

    /// A node id: one the daemon gave out, or any value.
    private func node(_ input: inout FuzzInput) -> UInt64 {
        let choice = input.byte()
        return choice < 0xF0 ? kernel.nodes[Int(choice) % kernel.nodes.count] : input.extreme()
    }

    /// A name: a seed file's, or any bytes up to 300 long.
    private func name(_ input: inout FuzzInput) -> [UInt8] {
        let choice = input.byte()
        if choice < 0xC0 { return Array(SeedVolume.fileNames[Int(choice) % SeedVolume.fileNames.count].utf8) }
        return input.bytes(Int(input.integer(UInt16.self)) % 300)
    }

    /// An open file's handle and node (fh 0, which the daemon refuses, when none is open).
    private func file(_ input: inout FuzzInput) -> (index: Int?, fh: UInt64, node: UInt64) {
        let files = kernel.files
        guard !files.isEmpty else { return (nil, 0, node(&input)) }
        let index = Int(input.byte()) % files.count
        return (index, files[index].fh, files[index].node)
    }

    private func transferSize(_ input: inout FuzzInput) -> UInt32 {
        UInt32(input.extreme() % (Self.maximumTransfer + 1))
    }

    /// `struct fuse_read_in` / `fuse_write_in`.
    private func readWrite(fh: UInt64, offset: UInt64, size: UInt32) -> MessageWriter {
        var w = MessageWriter()
        w.put(fh); w.put(offset); w.put(size); w.put(UInt32(0)); w.put(UInt64(0)); w.put(UInt32(0x8002)); w.put(UInt32(0))
        return w
    }

    mutating func run(_ input: inout FuzzInput) {
        var count = 0
        while !input.isEmpty && count < Self.maximumRequests {
            count += 1
            var w = MessageWriter()
            switch input.byte() % 24 {
            case 0: w.name(name(&input)); kernel.send(.lookup, node: node(&input), w.bytes)
            case 1:
                let (_, fh, node) = file(&input)
                w.put(UInt32(input.flag() ? 1 : 0)); w.put(UInt32(0)); w.put(fh)
                kernel.send(.getattr, node: node, w.bytes)
            case 2: setattr(&input)
            case 3:
                w.put(UInt32(input.flag() ? 0o2 : 0o102)); w.put(UInt32(input.integer(UInt16.self))); w.put(UInt32(0o022)); w.put(UInt32(0))
                w.name(name(&input))
                kernel.send(.create, node: node(&input), w.bytes, uid: input.flag() ? 0 : 1000)
            case 4:
                let target = node(&input)
                let flags: UInt32 = [0, 1, 2, 0o1002, 0o2002, 0o40002][Int(input.byte()) % 6]
                w.put(flags); w.put(UInt32(0))
                if let reply = kernel.send(.open, node: target, w.bytes) { kernel.opened(reply, node: target) }
            case 5:
                let (_, fh, node) = file(&input)
                kernel.send(.read, node: node, readWrite(fh: fh, offset: input.extreme(), size: transferSize(&input)).bytes)
            case 6:
                let (_, fh, node) = file(&input)
                let size = transferSize(&input)
                w = readWrite(fh: fh, offset: input.extreme(), size: size)
                w.append([UInt8](repeating: UInt8(truncatingIfNeeded: size | 1), count: Int(size)))
                kernel.send(.write, node: node, w.bytes)
            case 7:
                let (_, fh, node) = file(&input)
                w.put(fh); w.put(input.extreme()); w.put(input.extreme()); w.put(UInt32(input.byte() & 0x7F)); w.put(UInt32(0))
                kernel.send(.fallocate, node: node, w.bytes)
            case 8:
                let (_, fh, node) = file(&input)
                w.put(fh); w.put(input.extreme()); w.put(UInt32([3, 4, 0, 1, 2][Int(input.byte()) % 5])); w.put(UInt32(0))
                kernel.send(.lseek, node: node, w.bytes)
            case 9:
                let (_, source, sourceNode) = file(&input)
                let (_, target, targetNode) = file(&input)
                w.put(source); w.put(input.extreme()); w.put(targetNode); w.put(target); w.put(input.extreme()); w.put(input.extreme())
                w.put(UInt64(0))
                kernel.send(.copyFileRange, node: sourceNode, w.bytes)
            case 10:
                w.put(node(&input)); w.name(name(&input)); w.name(name(&input))
                kernel.send(.rename, node: node(&input), w.bytes)
            case 11:
                w.put(node(&input)); w.put(UInt32([0, 1, 2, 4, 7][Int(input.byte()) % 5])); w.put(UInt32(0))
                w.name(name(&input)); w.name(name(&input))
                kernel.send(.rename2, node: node(&input), w.bytes)
            case 12: w.name(name(&input)); kernel.send(.unlink, node: node(&input), w.bytes)
            case 13:
                w.put(UInt32(0)); w.put(UInt32(0))
                kernel.send(.opendir, node: node(&input), w.bytes)
            case 14:
                let directories = kernel.directories
                let fh = directories.isEmpty ? input.extreme() : directories[Int(input.byte()) % directories.count]
                w = readWrite(fh: fh, offset: input.extreme(), size: transferSize(&input))
                kernel.send(input.flag() ? .readdirplus : .readdir, node: 1, w.bytes)
            case 15:
                let (index, fh, node) = file(&input)
                w.put(fh); w.put(UInt32(2)); w.put(UInt32(0)); w.put(UInt64(0))
                kernel.send(.release, node: node, w.bytes)
                if let index { kernel.released(file: index) }
            case 16:
                let (_, fh, node) = file(&input)
                w.put(fh); w.put(UInt32(input.byte() & 1)); w.put(UInt32(0))
                kernel.send(.fsync, node: node, w.bytes)
            case 17:
                let (_, fh, node) = file(&input)
                w.put(fh); w.put(UInt32(0)); w.put(UInt32(0)); w.put(UInt64(0))
                kernel.send(.flush, node: node, w.bytes)
            case 18: kernel.send(.statfs, node: node(&input), [])
            case 19:
                w.put(input.extreme())
                kernel.send(.forget, node: node(&input), w.bytes)
            case 20:
                let directories = kernel.directories
                if !directories.isEmpty {
                    let index = Int(input.byte()) % directories.count
                    w.put(directories[index]); w.put(UInt32(0)); w.put(UInt32(0)); w.put(UInt64(0))
                    kernel.send(.releasedir, node: 1, w.bytes)
                    kernel.released(directory: index)
                }
            case 21:
                let refused: [FuseOpcode] = [.mkdir, .mknod, .symlink, .link, .rmdir, .readlink, .getxattr, .access, .fsyncdir]
                let opcode = refused[Int(input.byte()) % refused.count]
                w.put(UInt32(0o755)); w.put(UInt32(0)); w.put(UInt32(0)); w.put(UInt32(0)); w.name(name(&input)); w.name(name(&input))
                kernel.send(opcode, node: node(&input), w.bytes)
            default:
                let (_, fh, node) = file(&input)
                w.put(fh); w.put(UInt32(0)); w.put(UInt32(0))
                kernel.send(.getattr, node: node, w.bytes)
            }
        }
    }

    /// `struct fuse_setattr_in` with any set of valid bits, sizes and times at the edges.
    private func setattr(_ input: inout FuzzInput) {
        let (_, fh, node) = file(&input)
        var w = MessageWriter()
        w.put(UInt32(input.integer(UInt16.self) & 0x7FF)); w.put(UInt32(0)); w.put(fh)
        w.put(input.extreme())                       // size
        w.put(UInt64(0))                             // lock owner
        w.put(input.extreme()); w.put(input.extreme()); w.put(input.extreme())  // atime, mtime, ctime
        w.put(input.integer(UInt32.self)); w.put(input.integer(UInt32.self)); w.put(UInt32(0))  // nanoseconds
        w.put(UInt32(0o100000) | UInt32(input.integer(UInt16.self) & 0o7777)); w.put(UInt32(0))
        w.put(input.integer(UInt32.self)); w.put(input.integer(UInt32.self)); w.put(UInt32(0))
        kernel.send(.setattr, node: node, w.bytes)
    }

    /// RELEASE for every file and directory still open, as the kernel does before unmounting.
    mutating func releaseEverything() {
        while let last = kernel.files.last {
            var w = MessageWriter()
            w.put(last.fh); w.put(UInt32(2)); w.put(UInt32(0)); w.put(UInt64(0))
            kernel.send(.release, node: last.node, w.bytes)
            kernel.released(file: kernel.files.count - 1)
        }
        while let last = kernel.directories.last {
            var w = MessageWriter()
            w.put(last); w.put(UInt32(0)); w.put(UInt32(0)); w.put(UInt64(0))
            kernel.send(.releasedir, node: 1, w.bytes)
            kernel.released(directory: kernel.directories.count - 1)
        }
    }
}
