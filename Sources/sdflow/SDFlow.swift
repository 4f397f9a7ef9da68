import ArgumentParser
import Foundation
import TensorCore

/// The `sdflow` command: runs workflows and the tools around them.
@main
struct SDFlow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdflow",
        abstract: "Stable Diffusion 1.x image-editing workflows on the CPU.",
        discussion: "`sdflow FILE.yaml` runs a workflow (the same as `sdflow run FILE.yaml`).",
        subcommands: [Run.self, Validate.self, Explain.self, Nodes.self, GraphCommand.self, CacheCommand.self,
                      Tokenize.self, Bench.self],
        defaultSubcommand: Run.self
    )

    static func main() {
        // OpenBLAS reads OPENBLAS_CORETYPE only when it loads, so switching kernels takes a restart
        // (see BLAS.betterOpenBLASCore); if exec fails, sdflow runs on with the kernels it has.
        if let core = BLAS.betterOpenBLASCore() {
            setenv("OPENBLAS_CORETYPE", core, 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
        }
        main(nil)
    }
}
