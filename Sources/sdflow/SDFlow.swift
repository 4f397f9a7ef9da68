import ArgumentParser

/// The `sdflow` command: runs workflows and the tools around them.
@main
struct SDFlow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdflow",
        abstract: "Stable Diffusion 1.x image-editing workflows on the CPU.",
        discussion: "`sdflow FILE.yaml` runs a workflow (the same as `sdflow run FILE.yaml`).",
        version: SDFlowVersion.text,
        subcommands: [Run.self, Serve.self, Validate.self, Explain.self, Nodes.self, GraphCommand.self, CacheCommand.self,
                      Tokenize.self, ImportCommand.self, Convert.self, PluginCommand.self, Bench.self, Tune.self, SlurmCommand.self, WorkflowsCommand.self, Manual.self],
        defaultSubcommand: Run.self
    )
}
