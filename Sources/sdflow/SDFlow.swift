import ArgumentParser

/// The `sdflow` command: runs workflows and the tools around them.
@main
struct SDFlow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdflow",
        abstract: "Stable Diffusion 1.x image-editing workflows on the CPU.",
        subcommands: [Tokenize.self, Bench.self]
    )
}
