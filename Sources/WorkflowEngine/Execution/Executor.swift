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
        /// Models loaded by this run; a server passes one cache to every run, so that they stay loaded.
        public var models = ModelCache()
        /// Fingerprints of the files runs read; a server passes one to every run, so that files
        /// that did not change are not read again.
        public var fingerprints: FileFingerprints?

        public init(cache: ResultCache? = nil, explainOnly: Bool = false, reporter: RunReporter? = nil, shard: Shard? = nil,
                    compute: ComputeSettings = .current) {
            self.cache = cache
            self.explainOnly = explainOnly
            self.reporter = reporter
            self.shard = shard
            self.compute = compute
        }
    }

    let graph: Graph
    let options: Options
    var models: ModelCache { options.models }
    /// Seeds drawn, parameters per item and cache keys (Keys.swift).
    var keys: NodeKeys
    /// Results of the nodes that run once, by node and output port.
    var results: [String: [String: Produced]] = [:]
    /// Values of the nodes that run once, by cache key (per-item values go with their item).
    var memory: [String: Value] = [:]
    /// Streamed sources' items, listed before the batch runs.
    var listed: [String: [ListItem]] = [:]
    /// The files each output execution writes, resolved before anything runs (OutputFiles.swift).
    var files = OutputFiles()
    var report: RunReport

    public init(graph: Graph, options: Options) {
        self.graph = graph
        self.options = options
        keys = NodeKeys(graph: graph, compute: options.compute, fingerprints: options.fingerprints)
        report = RunReport(workflow: graph.workflow.path)
        report.shard = options.shard?.description
        report.seeds = keys.seeds
    }

    /// Runs (or explains) the graph and reports what happened; never throws for node failures.
    public func run() -> RunReport {
        options.compute.run(runGraph)
    }

    /// What the batch needs first (its sources and their inputs), the batch's items, the output
    /// plan, the rest of what runs once, then the batch item by item.
    private func runGraph() -> RunReport {
        let start = Date()
        func finished() -> RunReport {
            report.seconds = Date().timeIntervalSince(start)
            return report
        }
        let plan: ExecutionPlan
        do { plan = try ExecutionPlan(graph: graph) } catch {
            report.refused = ["\(error)"]
            return finished()
        }
        // What the batch's items come from: list the folders (or run the list producers).
        let sourceInputs = upstream(of: plan.sources)
        guard runOnce(plan.once.filter { sourceInputs.contains($0.name) }, plan: plan) else { return finished() }
        let batch: Batch
        do { batch = try makeBatch(plan) } catch {
            report.refused = ["\(error)"]
            return finished()
        }
        // Every output file, before anything is written.
        let runsUnbatched = options.shard.map { $0.index == 0 } ?? true
        let sinks = plan.once.filter { $0.description.isOutput && runsUnbatched }
            + (batch.entries.isEmpty ? [] : plan.perItem.filter { $0.description.isOutput })
        report.refused = planOutputs(sinks, plan: plan, batch: batch)
        guard report.refused.isEmpty else { return finished() }

        // The rest of what runs once, then the batch.
        let needed = upstream(of: sinks)
        for node in plan.once where !sourceInputs.contains(node.name) && !needed.contains(node.name) {
            var skipped = NodeReport(name: node.name, type: node.description.name, status: .notNeeded, seconds: 0, items: nil,
                                     computed: 0, errors: [], notes: [])
            skipped.notes.append(node.description.isOutput ? "shard 0 writes the outputs that are not part of a batch"
                                                           : "this shard has no batch items that need it")
            report.nodes.append(skipped)
            options.reporter?.nodeFinished(skipped)
        }
        guard runOnce(plan.once.filter { !sourceInputs.contains($0.name) && needed.contains($0.name) }, plan: plan) else { return finished() }
        if plan.hasBatch { runBatch(batch, plan: plan) }
        if !options.explainOnly { options.cache?.evict() }
        return finished()
    }

    /// Runs nodes that run once, in order; false when the run was stopped.
    private func runOnce(_ nodes: [Graph.Node], plan: ExecutionPlan) -> Bool {
        for node in nodes {
            if options.cancellation.isCancelled || options.cancellation.stopsAfterItem {
                report.cancelled = true
                return false
            }
            let started = Date()
            var nodeReport = plan.streamed.contains(node.name) ? list(node) : execute(node)
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

    /// The names of `nodes` and of every node they depend on.
    func upstream(of nodes: [Graph.Node]) -> Set<String> {
        var seen = Set<String>()
        var queue = nodes
        while let node = queue.popLast() {
            guard seen.insert(node.name).inserted else { continue }
            queue.append(contentsOf: node.inputs.values.map(graph.node(feeding:)))
        }
        return seen
    }

    /// A node that runs once: its inputs (a failed or skipped input skips it), its key, then memory,
    /// disk or running it (`executeOnce`).
    private func execute(_ node: Graph.Node) -> NodeReport {
        var nodeReport = NodeReport(name: node.name, type: node.description.name, status: .ran, seconds: 0, items: nil, computed: 0, errors: [], notes: [])
        var inputs: [String: Produced] = [:]
        for (port, edge) in node.inputs {
            guard let produced = results[edge.node]?[edge.output], produced.value != nil || produced.items != nil else {
                nodeReport.status = .skipped
                nodeReport.errors.append("input '\(port)' from '\(edge.node)' is not available")
                return nodeReport
            }
            inputs[port] = produced
        }
        let parameters = keys.parameters(of: node)
        let key: String
        do {
            key = NodeKeys.combine(try keys.baseKey(node, parameters: parameters), inputs.mapValues(\.key))
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
            if status == .willRun { nodeReport.notes.append(contentsOf: explain(node)) }
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
        guard let stream = node.entry.implementation.stream else {
            nodeReport.status = .failed
            nodeReport.errors.append("'\(node.description.name)' cannot stream its items")
            return nodeReport
        }
        let context = ExecutionContext(executor: self, node: node, parameters: keys.parameters(of: node), values: [:], key: "", item: nil)
        do {
            let items = try stream.items(context)
            listed[node.name] = items
            nodeReport.items = items.count
            nodeReport.notes.append("\(items.count) items, read one at a time as the batch reaches them")
        } catch {
            nodeReport.status = .failed
            nodeReport.errors.append("\(error)")
        }
        return nodeReport
    }
}
