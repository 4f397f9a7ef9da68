import Foundation
import ImageIO
import NodeKit
import TensorCore

/// Runs a checked graph: each needed node once, inputs first, reusing results by cache key.
///
/// The key of a node's result is a SHA-256 of its type, pack and implementation version, its
/// parameters (seeds resolved to numbers, input files by content fingerprint) and the keys of
/// its inputs. It does not contain node names, so another workflow that shares a sub-graph
/// finds the same entries.
///
/// Batches stream. A node whose input is a list while its port takes one value runs once per
/// item, and so does everything downstream of it (`ExecutionPlan`). The executor first runs
/// what the batch needs once (models, fixed prompts) and lists the items (a folder's file
/// names), resolves every output file (two outputs that would write one file are refused
/// before anything runs), then takes each item through all of its nodes — load, encode,
/// denoise, decode, save — before it starts the next, and drops the item's results when it is
/// done (they stay in the disk cache). Memory does not grow with the folder, each output is
/// written as soon as its item is done, a failing item is reported and the others go on, and
/// with `Options.shard` only that shard's items run.
public final class Executor {
    /// How to run.
    public struct Options {
        /// Results kept across runs; nil for memory only (`--no-cache`).
        public var cache: ResultCache?
        /// Compute keys and report hits and misses without running anything.
        public var explainOnly = false
        public var reporter: RunReporter?
        public var cancellation = Cancellation()
        /// Run only this shard of the batch's items (`--shard I/N`); shard 0 also runs the
        /// outputs that do not belong to a batch.
        public var shard: Shard?
        /// How the numeric core computes for this run; what in it changes results is part of every key.
        public var compute: ComputeSettings

        public init(cache: ResultCache? = nil, explainOnly: Bool = false, reporter: RunReporter? = nil, shard: Shard? = nil,
                    compute: ComputeSettings = .current) {
            self.cache = cache
            self.explainOnly = explainOnly
            self.reporter = reporter
            self.shard = shard
            self.compute = compute
        }
    }

    /// A result of one output port.
    struct Produced {
        /// The value (for a list: the items that succeeded).
        var value: Value?
        var key: String
        /// Per-item results when the value is a list.
        var items: [Item]?
    }

    /// One item of a list result.
    struct Item {
        var value: Value?
        var key: String
        var batch: BatchItem
        var error: String?
    }

    let graph: Graph
    let options: Options
    let models = ModelCache()
    /// Results of the nodes that run once, by node and output port.
    var results: [String: [String: Produced]] = [:]
    /// Values of the nodes that run once, by cache key (per-item values go with their item).
    var memory: [String: Value] = [:]
    var report: RunReport
    var resolvedParameters: [String: [String: ParameterValue]] = [:]
    /// Streamed sources' items, listed before the batch runs.
    var listed: [String: [ListItem]] = [:]
    /// Files each output execution writes, by `fileKey(node, item)`, resolved before anything runs.
    var plannedFiles: [String: [String]] = [:]
    /// `baseKey` by node name.
    private var baseKeys: [String: String] = [:]
    /// Files written by this run, which it never replaces.
    var written = Set<String>()

    public init(graph: Graph, options: Options) {
        self.graph = graph
        self.options = options
        report = RunReport(workflow: graph.workflow.path)
        report.shard = options.shard?.description
    }

    /// Runs (or explains) the graph and reports what happened; never throws for node failures.
    public func run() -> RunReport {
        options.compute.run(runGraph)
    }

    private func runGraph() -> RunReport {
        let start = Date()
        func finished() -> RunReport {
            report.seconds = Date().timeIntervalSince(start)
            return report
        }
        resolveSeeds()
        let plan: ExecutionPlan
        do { plan = try ExecutionPlan(graph: graph) } catch {
            report.refused = ["\(error)"]
            return finished()
        }
        // What the batch's items come from: list the folders (or run the list producers).
        let sourceInputs = upstream(of: plan.sources)
        guard runOnce(plan.once.filter(sourceInputs.contains), plan: plan) else { return finished() }
        let batch: Batch
        do { batch = try makeBatch(plan) } catch {
            report.refused = ["\(error)"]
            return finished()
        }
        // Every output file, before anything is written.
        let runsUnbatched = options.shard.map { $0.index == 0 } ?? true
        let sinks = plan.once.filter { graph.nodes[$0]!.description.isOutput && runsUnbatched }
            + (batch.entries.isEmpty ? [] : plan.perItem.filter { graph.nodes[$0]!.description.isOutput })
        report.refused = planOutputs(sinks, plan: plan, batch: batch)
        guard report.refused.isEmpty else { return finished() }

        // The rest of what runs once, then the batch.
        let needed = upstream(of: sinks)
        for name in plan.once where !sourceInputs.contains(name) && !needed.contains(name) {
            var skipped = NodeReport(name: name, type: graph.nodes[name]!.description.name, status: .notNeeded, seconds: 0, items: nil,
                                     computed: 0, errors: [], notes: [])
            skipped.notes.append(graph.nodes[name]!.description.isOutput ? "shard 0 writes the outputs that are not part of a batch"
                                                                         : "this shard has no batch items that need it")
            report.nodes.append(skipped)
            options.reporter?.nodeFinished(skipped)
        }
        guard runOnce(plan.once.filter { !sourceInputs.contains($0) && needed.contains($0) }, plan: plan) else { return finished() }
        if plan.hasBatch { runBatch(batch, plan: plan) }
        if !options.explainOnly { options.cache?.evict() }
        return finished()
    }

    /// Runs nodes that run once, in order; false when the run was stopped.
    private func runOnce(_ names: [String], plan: ExecutionPlan) -> Bool {
        for name in names {
            if options.cancellation.isCancelled || options.cancellation.stopsAfterItem {
                report.cancelled = true
                return false
            }
            let started = Date()
            var nodeReport = plan.streamed.contains(name) ? list(graph.nodes[name]!) : execute(graph.nodes[name]!)
            nodeReport.seconds = Date().timeIntervalSince(started)
            report.nodes.append(nodeReport)
            options.reporter?.nodeFinished(nodeReport)
            if nodeReport.status == .cancelled {
                report.cancelled = true
                return false
            }
        }
        return true
    }

    /// `names` and every node they depend on.
    func upstream(of names: [String]) -> Set<String> {
        var seen = Set<String>()
        var queue = names
        while let name = queue.popLast() {
            guard seen.insert(name).inserted else { continue }
            queue.append(contentsOf: graph.nodes[name]!.inputs.values.map(\.node))
        }
        return seen
    }

    /// `seed: random` becomes a number now, before any key is computed, and is reported.
    private func resolveSeeds() {
        for name in graph.order {
            let node = graph.nodes[name]!
            var values = node.parameters
            for spec in node.description.parameters {
                if case .seed = spec.kind, values[spec.name] == .text("random") {
                    let seed = Int.random(in: 0...Int(Int32.max))
                    values[spec.name] = .integer(seed)
                    report.seeds[name] = seed
                }
            }
            resolvedParameters[name] = values
        }
    }

    // MARK: - Nodes that run once

    private func execute(_ node: Graph.Node) -> NodeReport {
        var nodeReport = NodeReport(name: node.name, type: node.description.name, status: .ran, seconds: 0, items: nil, computed: 0, errors: [], notes: [])

        // Inputs; a failed or skipped input skips this node.
        var inputs: [String: Produced] = [:]
        for (port, edge) in node.inputs {
            guard let produced = results[edge.node]?[edge.output], produced.value != nil || produced.items != nil else {
                nodeReport.status = .skipped
                nodeReport.errors.append("input '\(port)' from '\(edge.node)' is not available")
                return nodeReport
            }
            inputs[port] = produced
        }
        let parameters = resolvedParameters[node.name] ?? node.parameters
        let key: String
        do {
            key = combine(try baseKey(node, parameters: parameters), inputs.mapValues(\.key))
        } catch {
            nodeReport.status = .failed
            nodeReport.errors.append("cannot fingerprint its files: \(error)")
            return nodeReport
        }
        let context = ExecutionContext(executor: self, node: node, parameters: parameters, values: inputs.compactMapValues(\.value),
                                       key: key, item: nil)
        switch executeOnce(context, remember: true) {
        case .success(let outputs, let status):
            nodeReport.status = status
            nodeReport.computed = status == .ran ? 1 : 0
            if status == .willRun { nodeReport.notes.append(contentsOf: explain(node, key: key)) }
            results[node.name] = outputs
            // A list producer may fail some items (e.g. a corrupt file in a folder).
            let itemErrors = outputs.values.flatMap { $0.items ?? [] }.compactMap(\.error)
            if !itemErrors.isEmpty {
                nodeReport.status = .partial
                nodeReport.errors.append(contentsOf: Array(Set(itemErrors)).sorted())
            }
        case .failure(let message):
            nodeReport.status = .failed
            nodeReport.errors.append(message)
        case .cancelled:
            nodeReport.status = .cancelled
        }
        return nodeReport
    }

    /// A streamed source lists its items; each is produced when the batch reaches it.
    private func list(_ node: Graph.Node) -> NodeReport {
        var nodeReport = NodeReport(name: node.name, type: node.description.name, status: .ran, seconds: 0, items: nil, computed: 0, errors: [], notes: [])
        let parameters = resolvedParameters[node.name] ?? node.parameters
        let context = ExecutionContext(executor: self, node: node, parameters: parameters, values: [:], key: "", item: nil)
        do {
            let items = try node.entry.implementation.stream!.items(context)
            listed[node.name] = items
            nodeReport.items = items.count
            nodeReport.notes.append("\(items.count) items, read one at a time as the batch reaches them")
        } catch {
            nodeReport.status = .failed
            nodeReport.errors.append("\(error)")
        }
        return nodeReport
    }

    /// How one execution ended.
    enum Result {
        case success([String: Produced], NodeReport.Status)
        case failure(String)
        /// The node stopped because the run was stopped (`NodeError.cancelled`).
        case cancelled
    }

    /// One execution: from memory (`remember`: for nodes that run once), from disk, or by
    /// running the node. An output node whose files are up to date is not run.
    func executeOnce(_ context: ExecutionContext, remember: Bool) -> Result {
        let node = context.node, d = node.description, key = context.executionKey
        let outputKeys = Dictionary(uniqueKeysWithValues: d.outputs.map { ($0.name, Fingerprint.hash(key + "\n" + $0.name)) })

        if let files = node.entry.implementation.files, files.isUpToDate(context) {
            return .success([:], options.explainOnly ? .willHit : .diskHit)
        }
        if !d.alwaysRuns {
            // Memory, then disk; every output must be found.
            var found: [String: Produced] = [:]
            var fromDisk = false
            for (name, outputKey) in outputKeys {
                if remember, let value = memory[outputKey] {
                    found[name] = produced(value, key: outputKey)
                } else if let cache = options.cache {
                    switch cache.read(outputKey) {
                    case .hit(let value):
                        found[name] = produced(value, key: outputKey)
                        if remember { memory[outputKey] = value }
                        fromDisk = true
                    case .corrupt(let why):
                        warn("cache entry of '\(node.name)' was damaged (\(why)); recomputing")
                    case .miss:
                        break
                    }
                }
            }
            if found.count == outputKeys.count && !outputKeys.isEmpty {
                return .success(found, options.explainOnly ? .willHit : (fromDisk ? .diskHit : .memoryHit))
            }
        }
        let producesList = d.outputs.contains { if case .list = $0.type { return true }; return false }
        if options.explainOnly && !producesList {
            // Keys of what would be computed, so that downstream keys can be explained too.
            // (List producers are loaders: they run, so that their items' keys are known.)
            return .success(outputKeys.mapValues { Produced(value: .text("(not computed)"), key: $0, items: nil) }, .willRun)
        }

        // A file this run wrote is never replaced (the output plan makes this a last resort).
        let files = plannedFiles[fileKey(node.name, context.batchItem)] ?? []
        if let again = files.first(where: written.contains) {
            return .failure("would replace \(again), which this run has just written")
        }
        options.reporter?.nodeStarted(node.name, type: d.name, item: context.batchItem, itemCount: context.batchItem.map { _ in report.batchSize ?? 0 })
        let outputs: [String: Value]
        do {
            outputs = try node.entry.implementation.run(context)
        } catch NodeError.cancelled {
            return .cancelled
        } catch {
            return .failure("\(error)")
        }
        written.formUnion(files)
        var produced: [String: Produced] = [:]
        for port in d.outputs {
            guard let value = outputs[port.name] else { return .failure("produced no '\(port.name)' output") }
            let outputKey = outputKeys[port.name]!
            if remember { memory[outputKey] = value }
            produced[port.name] = self.produced(value, key: outputKey)
            if let cache = options.cache, !d.alwaysRuns, ResultCache.isStorable(value) {
                do { try cache.write(value, key: outputKey) } catch { warn("could not store the result of '\(node.name)' in the cache: \(error)") }
            }
        }
        return .success(produced, .ran)
    }

    /// A result; lists get per-item content keys and batch items named after their source files.
    func produced(_ value: Value, key: String) -> Produced {
        guard case .list(let values) = value else { return Produced(value: value, key: key, items: nil) }
        let items = values.enumerated().map { index, v -> Item in
            let batch = BatchItem(index: index, stem: ContentKey.stem(v) ?? String(format: "item%03d", index))
            if case .failed(let message, _) = v {
                return Item(value: nil, key: Fingerprint.hash(key + "\nfailed item \(index)"), batch: batch, error: message)
            }
            return Item(value: v, key: ContentKey.of(v) ?? Fingerprint.hash(key + "\nitem \(index)"), batch: batch, error: nil)
        }
        let successful = values.filter { if case .failed = $0 { return false }; return true }
        return Produced(value: .list(successful), key: key, items: items)
    }

    func warn(_ message: String) {
        report.warnings.append(message)
        options.reporter?.warning(message)
    }

    // MARK: - Keys

    /// The part of a node's key that does not depend on its inputs; computed once per run (it
    /// fingerprints the files the node reads, and a batch asks for it once per item).
    func baseKey(_ node: Graph.Node, parameters: [String: ParameterValue]) throws -> String {
        // A node that reads one file per item has one base key per file.
        let files = ExecutionPlan.readsFilePerItem(node)
            ? node.description.parameters.filter { if case .inputPath = $0.kind { return true }; return false }
                .map { parameters[$0.name]?.description ?? "" } : []
        let memo = ([node.name] + files).joined(separator: "\u{0}")
        if let known = baseKeys[memo] { return known }
        let key = try computeBaseKey(node, parameters: parameters)
        baseKeys[memo] = key
        return key
    }

    /// A node's parameters for one batch item: input paths with `{stem}` or `{index}` name the
    /// item's file (already absolute; validated to have no other placeholder).
    func itemParameters(_ node: Graph.Node, item: BatchItem?) -> [String: ParameterValue] {
        var values = resolvedParameters[node.name] ?? node.parameters
        guard let item else { return values }
        for spec in node.description.parameters {
            guard case .inputPath = spec.kind, case .text(let path)? = values[spec.name], PathTemplate.hasPlaceholders(path),
                  let filled = try? PathTemplate.fill(path, PathTemplate.itemValues(item)) else { continue }
            values[spec.name] = .text(filled)
        }
        return values
    }

    private func computeBaseKey(_ node: Graph.Node, parameters: [String: ParameterValue]) throws -> String {
        let d = node.description
        var lines = ["sdflow-node-v1", "type \(d.name)", "pack \(node.entry.pack.name) \(node.entry.pack.version)", "version \(d.version)"]
            + options.compute.fingerprint
        for spec in d.parameters where spec.affectsResult {
            guard let value = parameters[spec.name] else { continue }
            switch spec.kind {
            case .inputPath where value != .text(""):
                lines.append("parameter \(spec.name) file \(try Fingerprint.path(value.description))")
            default:
                lines.append("parameter \(spec.name) \(canonical(value))")
            }
        }
        return lines.joined(separator: "\n")
    }

    private func canonical(_ value: ParameterValue) -> String {
        switch value {
        // As a number where a Double holds it exactly (keys stay those of earlier versions), else
        // exactly: seeds above 2^53 would otherwise share keys.
        case .integer(let i): return abs(i) <= 1 << 53 ? "number \(Double(i))" : "integer \(i)"
        case .number(let d): return "number \(d)"
        case .text(let s): return "text \(s.debugDescription)"
        case .boolean(let b): return "boolean \(b)"
        }
    }

    func combine(_ base: String, _ inputKeys: [String: String]) -> String {
        Fingerprint.hash(base + "\n" + inputKeys.sorted { $0.key < $1.key }.map { "input \($0.key) \($0.value)" }.joined(separator: "\n"))
    }

    /// Explain mode: why a node will run.
    private func explain(_ node: Graph.Node, key: String) -> [String] {
        var notes: [String] = []
        for (port, edge) in node.inputs.sorted(by: { $0.key < $1.key }) {
            if report.nodes.first(where: { $0.name == edge.node })?.status == .willRun {
                notes.append("input '\(port)' comes from '\(edge.node)', which will run")
            }
        }
        if notes.isEmpty {
            notes.append(options.cache == nil ? "no disk cache (--no-cache)" : "no cached result for these parameters and inputs")
        }
        return notes
    }

    // MARK: - Context

    /// The workflow, its parameters, and the nodes upstream of `name` with their resolved parameters.
    func runInfo(for name: String) -> RunInfo {
        var upstream: [RunInfo.UpstreamNode] = []
        var seen = Set<String>()
        var queue = [name]
        while let current = queue.popLast() {
            guard seen.insert(current).inserted, let node = graph.nodes[current] else { continue }
            let parameters = (resolvedParameters[current] ?? node.parameters).mapValues(\.description)
            upstream.append(RunInfo.UpstreamNode(name: current, type: node.description.name, parameters: parameters,
                                                 inputs: node.inputs.mapValues(\.node)))
            queue.append(contentsOf: node.inputs.values.map(\.node))
        }
        // Generation settings from the nodes that describe them, nearest first.
        let byName = Dictionary(upstream.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var generation: [String: String] = [:]
        for node in upstream {
            guard let describe = graph.nodes[node.name]?.entry.implementation.describe else { continue }
            generation.merge(describe(node, byName)) { nearer, _ in nearer }
        }
        return RunInfo(workflowText: graph.workflow.text, workflowPath: graph.workflow.path, parameters: graph.parameterValues, upstream: upstream,
                       sourceImage: graph.workflow.sourceImage, generation: generation)
    }

    fileprivate func progress(_ node: String, completed: Int, total: Int, note: String? = nil) {
        options.reporter?.nodeProgress(node, completed: completed, total: total, note: note)
    }
}

/// Content keys of list items, so each item of a batch is cached by what it is.
enum ContentKey {
    static func of(_ value: Value) -> String? {
        guard let (tensors, metadata) = ResultCache.encode(value) else { return nil }
        return Fingerprint.hash("item\n" + ResultCache.checksum(tensors) + "\n" + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
    }

    /// The stem of the file an image came from (set by image loaders in `Image.metadata["sdflow:source"]`).
    static func stem(_ value: Value) -> String? {
        let image: Image?
        switch value {
        case .image(let i), .mask(let i): image = i
        case .failed(_, let source?): return URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        default: image = nil
        }
        guard let source = image?.metadata[ImageMetadataKey.source] else { return nil }
        return URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
    }
}

/// The `NodeContext` of one execution.
final class ExecutionContext: NodeContext {
    let executor: Executor
    let node: Graph.Node
    let parameters: [String: ParameterValue]
    let values: [String: Value]
    let executionKey: String
    let batchItem: BatchItem?

    init(executor: Executor, node: Graph.Node, parameters: [String: ParameterValue], values: [String: Value], key: String, item: BatchItem?) {
        self.executor = executor
        self.node = node
        self.parameters = parameters
        self.values = values
        executionKey = key
        batchItem = item
    }

    var nodeName: String { node.name }
    func input(_ name: String) -> Value? { values[name] }
    func parameter(_ name: String) -> ParameterValue? { parameters[name] }
    var models: ModelCache { executor.models }
    func progress(completed: Int, total: Int) { executor.progress(node.name, completed: completed, total: total) }
    func progress(completed: Int, total: Int, note: String?) { executor.progress(node.name, completed: completed, total: total, note: note) }
    var isCancelled: Bool { executor.options.cancellation.isCancelled }
    func warn(_ message: String) { executor.warn("\(node.name): \(message)") }
    var runInfo: RunInfo { executor.runInfo(for: node.name) }
}
