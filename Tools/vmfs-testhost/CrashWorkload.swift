import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// Metadata-heavy random work, logged so that a verifier can tell, after this process is killed
/// at any instant, which files must read back exactly.
///
/// Before touching a name the workload logs `BEGIN <name>`; once a change is durable (fsync, or
/// a namespace operation, which commits before it returns) it logs `DONE <name> <size> <crc>`
/// or `GONE <name>`. A name whose last line is DONE must exist with that size and checksum; a
/// name whose last line is GONE must not exist; a name whose last line is BEGIN is unknown.
struct CrashWorkload: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "crash-workload")

    @OptionGroup var host: HostIdentityOptions
    @Option var seed: UInt64 = 1
    @Option var log: String
    @Option(help: "Operations to run (0: until killed).") var operations = 0
    @Option(name: .customLong("max-size")) var maxSize = 6 << 20
    @Argument var device: String

    func run() throws {
        let events = try EventLog(path: log)
        let volume = try Volume.mount(path: device, options: host.mountOptions())
        var random = SeededRandom(seed: seed)
        let prefix = "h\(seed % 1000)-"
        // The model of every file this host created: name -> content.
        var model: [String: [UInt8]] = [:]
        var handles: [String: VMFSCore.FileHandle] = [:]
        var dirty: Set<String> = []
        say("READY")
        var done = 0
        while operations == 0 || done < operations {
            done += 1
            let names = model.keys.sorted()
            let choice = Int(random.next() % 100)
            if names.count < 2 || (choice < 12 && names.count < 10) {
                let name = prefix + "f\(random.next() % 1000)"
                if model[name] != nil { continue }
                events.append("BEGIN \(name)")
                let handle = try volume.create(name, access: .readWrite)
                handles[name] = handle
                model[name] = []
                events.append("DONE \(name) 0 \(checksum([]))")
                continue
            }
            let name = names[Int(random.next() % UInt64(names.count))]
            guard let handle = handles[name] else { continue }
            switch choice {
            case 12..<20:  // rename, sometimes over another file of ours
                let target = random.next() % 3 == 0 ? names[Int(random.next() % UInt64(names.count))] : prefix + "r\(random.next() % 1000)"
                if target == name { continue }
                events.append("BEGIN \(name)")
                events.append("BEGIN \(target)")
                if let old = handles[target] { try old.close() }
                try volume.rename(name, to: target)
                model[target] = model[name]
                handles[target] = handle
                model[name] = nil
                handles[name] = nil
                if dirty.remove(name) != nil { dirty.insert(target) }
                events.append("GONE \(name)")
                if dirty.contains(target) { continue }
                events.append("DONE \(target) \(model[target]!.count) \(checksum(model[target]!))")
            case 20..<26:  // unlink
                events.append("BEGIN \(name)")
                try handle.close()
                try volume.remove(name)
                model[name] = nil
                handles[name] = nil
                dirty.remove(name)
                events.append("GONE \(name)")
            default:
                events.append("BEGIN \(name)")
                dirty.insert(name)
                var content = model[name]!
                let kind = random.next() % 10
                if kind < 5 {
                    let offset = Int(random.next() % UInt64(maxSize))
                    let length = 1 + Int(random.next() % UInt64(1 << 20))
                    let data = patternBytes(length, seed: random.next())
                    try handle.write(bytes: data, at: UInt64(offset))
                    if content.count < offset + length { content += [UInt8](repeating: 0, count: offset + length - content.count) }
                    content.replaceSubrange(offset..<(offset + length), with: data)
                } else if kind < 7 {
                    let size = Int(random.next() % UInt64(maxSize))
                    try handle.truncate(to: UInt64(size))
                    if size < content.count { content.removeLast(content.count - size) } else { content += [UInt8](repeating: 0, count: size - content.count) }
                } else if kind < 9 {
                    guard !content.isEmpty else { continue }
                    let offset = Int(random.next() % UInt64(content.count))
                    let length = 1 + Int(random.next() % UInt64(3 << 20))
                    try handle.punchHole(offset: UInt64(offset), length: UInt64(length))
                    for i in offset..<min(offset + length, content.count) { content[i] = 0 }
                } else {
                    let offset = Int(random.next() % UInt64(maxSize))
                    let length = 1 + Int(random.next() % UInt64(2 << 20))
                    try handle.allocate(offset: UInt64(offset), length: UInt64(length))
                    if content.count < offset + length { content += [UInt8](repeating: 0, count: offset + length - content.count) }
                }
                model[name] = content
                if random.next() % 10 < 7 {
                    try handle.sync()
                    dirty.remove(name)
                    events.append("DONE \(name) \(content.count) \(checksum(content))")
                }
            }
        }
        for (name, handle) in handles {
            try handle.sync()
            try handle.close()
            events.append("DONE \(name) \(model[name]!.count) \(checksum(model[name]!))")
        }
        try volume.unmount()
        say("FINISHED")
    }
}
