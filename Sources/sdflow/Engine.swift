import ArgumentParser
import Foundation
import DiffusionNodes
import ImageNodes
import NodeKit
import TensorCore
import WorkflowEngine

/// The node packs sdflow runs with.
enum Engine {
    /// The built-in packs.
    static let builtinPacks: [NodePack] = [ImageNodes.pack, DiffusionNodes.pack]

    /// A registry with the built-in packs and the plugins found in `pluginFolders`,
    /// `SDFLOW_PLUGIN_PATH` and the user plugin folder. A plugin given with `--plugins` that cannot
    /// be loaded is an error; one found in the automatic folders is skipped with a warning (a stale
    /// library there must not stop every command), and a workflow that uses its nodes then fails
    /// on their unknown type after that warning.
    static func registry(pluginFolders: [String]) throws -> NodeRegistry {
        var registry = NodeRegistry()
        for pack in builtinPacks { try registry.register(pack) }
        let explicit = PluginLoader.libraries(in: pluginFolders)
        for library in explicit { try registry.register(try PluginLoader.load(library)) }
        for library in PluginLoader.libraries(in: PluginLoader.folders(explicit: [])) where !explicit.contains(library) {
            do { try registry.register(try PluginLoader.load(library)) } catch {
                FileHandle.standardError.write(Data("warning: skipping \(error)\n".utf8))
            }
        }
        return registry
    }

    /// The compute settings of a command: the environment's (`ComputeSettings.fromEnvironment`, an
    /// unknown value is an error), then its flags: `threads`, and `fast` for the opt-in fast mode
    /// (Winograd F(4x4,3x3) convolutions, bfloat16 GEMMs on CPUs with AVX-512 BF16, 2 GB of freed
    /// buffers kept for reuse).
    static func computeSettings(threads: Int?, fast: Bool = false) throws -> ComputeSettings {
        var settings: ComputeSettings
        do { settings = try ComputeSettings.fromEnvironment() } catch { throw ValidationError("\(error)") }
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be at least 1") }
            settings.threads = threads
        }
        if fast { settings.useFastMode() }
        return settings
    }

    /// Where the kernel choices of this machine are kept: `kernels.json` in the default cache folder
    /// (machine facts, not results: shared by every `--cache-dir`).
    static var kernelChoiceFile: String { ResultCache.defaultFolder + "/kernels.json" }

    /// `settings` with the kernels measured fastest on this machine, measuring them first if this
    /// machine (CPU, threads, OpenBLAS, instruction-set cap, build) has no choice kept yet (says so
    /// unless `quiet`); layer shapes not measured yet are measured the first time they run.
    static func withMeasuredKernels(_ settings: ComputeSettings, quiet: Bool) -> ComputeSettings {
        let (choice, measuredNow) = settings.run { KernelTuning.choice(file: kernelChoiceFile) }
        if measuredNow && !quiet {
            FileHandle.standardError.write(Data("kernels measured on this machine: float32 GEMM \(choice.summary); kept in \(kernelChoiceFile)\n".utf8))
        }
        return settings.using(choice, from: kernelChoiceFile)
    }
}
