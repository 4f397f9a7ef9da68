import ArgumentParser
import DiffusionNodes
import Dispatch
import Foundation
import ImageIO
import NodeKit
import TensorCore
import WorkflowEngine

/// Options shared by the commands that load a workflow.
struct WorkflowOptions: ParsableArguments {
    @Argument(help: "The workflow (.yaml), or a PNG that sdflow wrote (its workflow runs again).")
    var workflow: String

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a workflow parameter.", valueName: "name=value"))
    var overrides: [String] = []

    @Option(help: "A folder of node-pack plugins to load (also SDFLOW_PLUGIN_PATH).")
    var plugins: [String] = []

    @Option(help: "A folder of textual-inversion embeddings for every clip_encode that names none.")
    var embeddings: String?

    @Option(help: "Write a live preview PNG of every denoise node into this folder while it runs.")
    var preview: String?

    @Option(help: "Steps between live previews.")
    var previewEvery: Int?

    @Option(help: "TAESD (folder or taesd_decoder.safetensors) for full-size live previews.")
    var previewTaesd: String?

    @Option(help: .hidden)  // where relative output paths start (written by `sdflow slurm` for a bundled workflow)
    var outputsRelativeTo: String?

    /// Node parameters the command line sets for every node that leaves them unset.
    var nodeDefaults: [String: String] {
        var defaults: [String: String] = [:]
        defaults["embeddings"] = embeddings
        defaults["preview"] = preview
        defaults["preview_every"] = previewEvery.map(String.init)
        defaults["preview_taesd"] = previewTaesd
        return defaults
    }

    /// The file the argument names (as given, or a bundled workflow's absolute path) and where its relative output paths start (nil: its
    /// own folder). A bare name that is no file (`inpaint`) is a bundled workflow (`sdflow workflows`),
    /// which writes as if it were in `./workflows`, so that `../out/x.png` lands in `./out/`.
    func source() -> (path: String, outputFolder: String?) {
        let here = FileManager.default.currentDirectoryPath
        let outputs = outputsRelativeTo.map { Graph.resolve($0, base: here) }
        if let bundled = BundledWorkflows.path(named: workflow) {
            return (bundled, outputs ?? here + "/workflows")
        }
        return (workflow, outputs)
    }

    /// The workflow, read from a YAML file, from the text chunks of a PNG written by sdflow, or
    /// from a ComfyUI API workflow (the file `source()` names).
    func load(registry: NodeRegistry? = nil) throws -> Workflow {
        let (path, outputFolder) = source()
        var loaded = try Workflow.load(path: path, registry: registry)
        if let outputFolder { loaded.outputFolder = outputFolder }
        return loaded
    }

    /// `--set` pairs; for a PNG, its recorded parameters come first (so the same image results).
    func parameterOverrides(for workflow: Workflow) throws -> [String: String] {
        var result = workflow.recordedParameters
        for pair in overrides {
            guard let equals = pair.firstIndex(of: "=") else { throw ValidationError("--set \(pair): expected name=value") }
            result[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return result
    }

    func graph(registry: NodeRegistry) throws -> Graph {
        let workflow = try load(registry: registry)
        return try Graph(workflow: workflow, registry: registry, overrides: try parameterOverrides(for: workflow),
                         nodeDefaults: nodeDefaults)
    }

    /// The checked graph; workflow errors are printed (all of them, with positions) and exit with status 2.
    func checkedGraph(registry: NodeRegistry) throws -> Graph {
        do {
            return try graph(registry: registry)
        } catch let error as WorkflowErrors {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        } catch let error as WorkflowError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
    }
}

/// How to run a workflow: the options `run` and `explain` share.
struct RunOptions: ParsableArguments {
    @Option(help: "The cache folder (default: $XDG_CACHE_HOME/sdflow or ~/.cache/sdflow).")
    var cacheDir: String?

    @Flag(help: "Do not read or write the disk cache.")
    var noCache = false

    @Option(help: "Cache size budget in GB; least recently used results are evicted past it.")
    var cacheSize: Double = 20

    @Flag(name: .shortAndLong, help: "Print only errors.")
    var quiet = false

    @Option(help: "Write a JSON summary (per-node time, cache hits, errors; per batch item its status, outputs and time) to this file, or - for standard output.")
    var summary: String?

    @Option(help: "Threads for numeric work (default: all cores).")
    var threads: Int?

    @Option(help: ArgumentHelp("Run only shard I of N of every batch (0 <= I < N): items are assigned by a hash of their file name, so N processes sharing the output and cache folders write every output once.",
                               valueName: "I/N"))
    var shard: String?

    @Flag(help: "Fast mode: Winograd F(4x4,3x3) convolutions and, with AVX-512 BF16, bfloat16 GEMMs (its error: docs/benchmarks.md).")
    var fast = false

    /// Runs (or with `explainOnly`, explains) the workflow and exits with the run's status.
    func execute(_ workflow: WorkflowOptions, explainOnly: Bool) throws {
        let shard: Shard?
        do { shard = try self.shard.map(Shard.init(parsing:)) } catch { throw ValidationError("\(error)") }
        var compute = try Engine.computeSettings(threads: threads, fast: fast)
        let registry = try Engine.registry(pluginFolders: workflow.plugins)
        let graph = try workflow.checkedGraph(registry: registry)
        // Models run matrix products: use the kernels measured fastest here (measured on first use).
        if !explainOnly, graph.nodes.values.contains(where: { registry.entry($0.description.name)?.pack.name == DiffusionNodes.pack.name }) {
            compute = Engine.withMeasuredKernels(compute, quiet: quiet || summary == "-")
        }
        let cache = noCache ? nil : try ResultCache(folder: cacheDir ?? ResultCache.defaultFolder, budget: Int(cacheSize * 1e9))
        let reporter = TerminalReporter(quiet: quiet || summary == "-")
        var execution = Executor.Options(cache: cache, explainOnly: explainOnly, reporter: reporter, shard: shard, compute: compute)
        execution.cancellation = Interrupts.install()
        for name in graph.unused where !quiet {
            reporter.warning("node '\(name)' is not needed by any output and will not run")
        }
        let report = Executor(graph: graph, options: execution).run()
        if !report.refused.isEmpty {
            // Found before anything ran (two outputs writing one file): like an invalid workflow.
            for problem in report.refused { FileHandle.standardError.write(Data("error: \(workflow.workflow): \(problem)\n".utf8)) }
            throw ExitCode(2)
        }
        reporter.finish(report, explain: explainOnly)
        if let summary {
            if summary == "-" { print(report.json()) } else { try report.json().write(toFile: summary, atomically: true, encoding: .utf8) }
        }
        if report.cancelled { throw ExitCode(130) }
        if !report.succeeded { throw ExitCode(1) }
    }
}

/// `sdflow run FILE` (also `sdflow FILE`).
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a workflow (the default command).")

    @OptionGroup var options: WorkflowOptions
    @OptionGroup var settings: RunOptions

    @Flag(help: "Say per node whether it would be a cache hit, without running anything.")
    var dryRun = false

    func run() throws { try settings.execute(options, explainOnly: dryRun) }
}

/// `sdflow explain FILE`: the same as `run --dry-run`, with the same options.
struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Say per node whether a run would hit the cache, and why not.")

    @OptionGroup var options: WorkflowOptions
    @OptionGroup var settings: RunOptions

    func run() throws { try settings.execute(options, explainOnly: true) }
}

/// `sdflow validate FILE`.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a workflow without running it.")

    @OptionGroup var options: WorkflowOptions

    func run() throws {
        let graph = try options.checkedGraph(registry: try Engine.registry(pluginFolders: options.plugins))
        print("\(options.workflow): OK (\(graph.order.count) nodes to run for \(graph.outputs.count) outputs)")
        for name in graph.unused { print("warning: node '\(name)' is not needed by any output") }
    }
}

/// Ctrl-C: the first asks the run to stop after the current batch item (or, outside a batch,
/// after the current step), the second after the current step, the third exits at once.
/// SIGTERM (kill, Slurm's scancel) stops after the current step. Outputs and cache entries are
/// written atomically, so nothing half-written remains, and the next run resumes.
enum Interrupts {
    /// The signal sources, kept alive for the process's life (signals are process-wide). Appended
    /// to only by `install`, which a command calls once from its main thread.
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    static func install() -> Cancellation {
        let cancellation = Cancellation()
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        for number in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                func say(_ text: String) { FileHandle.standardError.write(Data("\n\(text)\n".utf8)) }
                if cancellation.isCancelled { _exit(130) }
                if number == SIGINT && cancellation.isInBatch && !cancellation.stopsAfterItem {
                    say("stopping after the current item (Ctrl-C again to stop after the current step)")
                    cancellation.cancelAfterItem()
                } else {
                    say("stopping after the current step (Ctrl-C again to quit at once)")
                    cancellation.cancel()
                }
            }
            source.resume()
            sources.append(source)
        }
        return cancellation
    }
}
