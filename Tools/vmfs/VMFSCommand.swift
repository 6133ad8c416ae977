import ArgumentParser

/// `vmfs`: the administrator's tool for a VMFS volume, without FUSE.
@main
struct VMFSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmfs",
        abstract: "Inspect and manage a VMFS volume without mounting it through FUSE.",
        discussion: """
            Commands that change the volume (put, rm, mv, create, recover, break-lock) join it as a \
            host: they claim a heartbeat slot and take the on-disk locks other hosts respect, so they \
            are safe while the volume is mounted elsewhere. info, ls, hosts and locks only read.
            """,
        subcommands: [Info.self, List.self, Put.self, Get.self, Remove.self, Move.self, Create.self,
                      Hosts.self, Locks.self, Recover.self, BreakLock.self])
}

