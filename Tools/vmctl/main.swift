import ArgumentParser

/// `vmctl`: VMs whose files live on a VMFS volume.
struct VMControl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmctl",
        abstract: "Create, run, list and remove virtual machines stored on a VMFS volume.",
        discussion: """
            A VM is a set of files on the volume: NAME.vmx (configuration), NAME.vmdk + NAME-flat.vmdk \
            (a VMware monolithicFlat disk, sparse), NAME.log (console output) and its boot image. \
            `vmctl run` opens them through VMFSCore directly and holds their exclusive locks while the \
            VM runs, so no other host can run the same VM.
            """,
        subcommands: [Create.self, Run.self, List.self, Show.self, Remove.self])
}

VMControl.main()
