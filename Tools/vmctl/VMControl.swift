import ArgumentParser

/// `vmctl`: VMs whose files live on a VMFS volume.
@main
struct VMControl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmctl",
        abstract: "Create, run, list and remove virtual machines stored on a VMFS volume, alone or through the host agent.",
        discussion: """
            A VM is a set of files on the volume: NAME.vmx (configuration), NAME.vmdk + NAME-flat.vmdk \
            (a VMware monolithicFlat disk, sparse), NAME.log (console output) and its boot image. \
            `vmctl run` opens them through VMFSCore directly and holds their exclusive locks while the \
            VM runs, so no other host can run the same VM.

            With a host agent (vmhostd) on this host, every command goes through it: `--volume` names a
            volume the agent holds, or `--datastore` names it on the agent; `--host` reaches another
            host's agent. power-on, power-off, reset, console, stats, events, register and unregister
            always use an agent.
            """,
        subcommands: [Create.self, Run.self, List.self, Show.self, Remove.self, PowerOn.self, PowerOff.self, Reset.self,
                      Console.self, Stats.self, Events.self, Register.self, Unregister.self, HA.self, Maintenance.self,
                      VirtualSwitchCommand.self, PortGroupCommand.self, NICs.self, Announce.self, Migrate.self])
}
