import Foundation
import ImageIO
import NodeKit
import TensorCore

/// Runs a checked graph: each needed node once, inputs first, reusing results by cache key.
///
/// The key of a node's result is a SHA-256 of its type, pack and implementation version, its
/// parameters (seeds resolved to numbers, input files by content fingerprint) and the keys of
/// its inputs. It does not contain node names, so another workflow that shares a sub-graph
/// finds the same entries. A node whose input is a list while its port takes one value runs
/// once per item; list items are keyed by content, so each item is cached on its own and a
/// failing item does not stop the others.
public final class Executor {
    /// How to run.
    public struct Options {
        /// Results kept across runs; nil for memory only (`--no-cache`).
        public var cache: ResultCache?
        /// Compute keys and report hits and misses without running anything.
        public var explainOnly = false
        public var reporter: RunReporter?
        public var cancellation = Cancellation()

        public init(cache: ResultCache? = nil, explainOnly: Bool = false, reporter: RunReporter? = nil) {
            self.cache = cache
            self.explainOnly = explainOnly
            self.reporter = reporter
        }
    }

    /// A result of one output port.
    struct Produced {
        /// The value (for a mapped node: the list of item values that succeeded).
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
    private var results: [String: [String: Produced]] = [:]
    private var memory: [String: Value] = [:]
    private var report: RunReport
    private var resolvedParameters: [String: [String: ParameterValue]] = [:]

    public init(graph: Graph, options: Options) {
        self.graph = graph
        self.options = options
        report = RunReport(workflow: graph.workflow.path, nodes: [], seconds: 0, seeds: [:], warnings: [], cancelled: false)
    }

    /// Runs (or explains) the graph and reports what happened; never throws for node failures.
    public func run() -> RunReport {
        let start = Date()
        resolveSeeds()
        for name in graph.order {
            if options.cancellation.isCancelled {
                report.cancelled = true
                break
            }
            let started = Date()
            var nodeReport = execute(graph.nodes[name]!)
            nodeReport.seconds = Date().timeIntervalSince(started)
            report.nodes.append(nodeReport)
            options.reporter?.nodeFinished(nodeReport)
            if nodeReport.status == .cancelled { report.cancelled = true; break }
        }
        if !options.explainOnly { options.cache?.evict() }
        report.seconds = Date().timeIntervalSince(start)
        return report
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

    // MARK: - One node

    private func execute(_ node: Graph.Node) -> NodeReport {
        let d = node.description
        var nodeReport = NodeReport(name: node.name, type: d.name, status: .ran, seconds: 0, items: nil, computed: 0, errors: [], notes: [])

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
        let baseKey: String
        do {
            baseKey = try key(node, parameters: parameters)
        } catch {
            nodeReport.status = .failed
            nodeReport.errors.append("cannot fingerprint its files: \(error)")
            return nodeReport
        }

        // Ports that take one value but receive a list: run once per item.
        let mapped = node.inputs.filter { port, _ in
            let spec = d.input(port)!
            if case .list = spec.type { return false }
            return inputs[port]?.items != nil
        }.map(\.key).sorted()
        if mapped.isEmpty {
            let inputKeys = inputs.mapValues(\.key)
            let values = inputs.compactMapValues(\.value)
            let outcome = executeOnce(node, parameters: parameters, values: values, key: combine(baseKey, inputKeys), item: nil)
            switch outcome {
            case .success(let outputs, let status):
                nodeReport.status = status
                nodeReport.computed = status == .ran ? 1 : 0
                if status == .willRun { nodeReport.notes.append(contentsOf: explain(node, key: combine(baseKey, inputKeys))) }
                results[node.name] = outputs
                // A list producer may fail some items (e.g. a corrupt file in a folder).
                let itemErrors = outputs.values.flatMap { $0.items ?? [] }.compactMap { item in item.error }
                if !itemErrors.isEmpty {
                    nodeReport.status = .partial
                    nodeReport.errors.append(contentsOf: itemErrors)
                }
            case .failure(let message):
                nodeReport.status = message == "cancelled" ? .cancelled : .failed
                nodeReport.errors.append(message)
            }
            return nodeReport
        }

        // Mapped: every mapped input must have the same number of items.
        let counts = Set(mapped.map { inputs[$0]!.items!.count })
        guard counts.count == 1, let count = counts.first else {
            nodeReport.status = .failed
            nodeReport.errors.append("its list inputs have different lengths: " + mapped.map { "\($0) \(inputs[$0]!.items!.count)" }.joined(separator: ", "))
            return nodeReport
        }
        nodeReport.items = count
        var outputs: [String: Produced] = [:]
        for port in d.outputs { outputs[port.name] = Produced(value: nil, key: "", items: []) }
        var hits = 0, failures = 0, skipped = 0
        for index in 0..<count {
            if options.cancellation.isCancelled {
                nodeReport.status = .cancelled
                return nodeReport
            }
            let first = inputs[mapped[0]]!.items![index]
            var inputKeys = inputs.mapValues(\.key)
            var values = inputs.compactMapValues(\.value)
            var itemError: String?
            for port in mapped {
                let item = inputs[port]!.items![index]
                inputKeys[port] = item.key
                if let value = item.value { values[port] = value } else { itemError = item.error ?? "failed upstream" }
            }
            let itemKey = combine(baseKey, inputKeys)
            var result: Result
            if itemError != nil {
                // Already reported where it failed.
                skipped += 1
                for name in outputs.keys {
                    outputs[name]!.items!.append(Item(value: nil, key: itemKey + ":" + name, batch: first.batch, error: "an input failed"))
                }
                continue
            } else {
                if !options.explainOnly { options.reporter?.nodeStarted(node.name, type: d.name, item: first.batch, itemCount: count) }
                result = executeOnce(node, parameters: parameters, values: values, key: itemKey, item: first.batch)
            }
            switch result {
            case .success(let produced, let status):
                if status == .memoryHit || status == .diskHit || status == .willHit { hits += 1 }
                if status == .ran { nodeReport.computed += 1 }
                for (name, p) in produced {
                    outputs[name]!.items!.append(Item(value: p.value, key: p.key, batch: first.batch, error: nil))
                }
            case .failure(let message):
                if message == "cancelled" {
                    nodeReport.status = .cancelled
                    return nodeReport
                }
                failures += 1
                nodeReport.errors.append("\(first.batch.stem): \(message)")
                for name in outputs.keys {
                    outputs[name]!.items!.append(Item(value: nil, key: itemKey + ":" + name, batch: first.batch, error: message))
                }
            }
        }
        for name in outputs.keys {
            let items = outputs[name]!.items!
            outputs[name]!.key = Fingerprint.hash("list\n" + items.map(\.key).joined(separator: "\n"))
            outputs[name]!.value = .list(items.compactMap(\.value))
        }
        results[node.name] = outputs
        if options.explainOnly {
            nodeReport.status = hits == count ? .willHit : .willRun
            nodeReport.notes.append("runs once per item; \(hits) of \(count) items are in the cache")
        } else if failures + skipped == count {
            nodeReport.status = .failed
        } else if failures + skipped > 0 {
            nodeReport.status = .partial
            if skipped > 0 { nodeReport.notes.append("\(skipped) item(s) skipped because an input failed") }
        } else {
            nodeReport.status = hits == count ? .diskHit : (hits > 0 ? .mixed : .ran)
        }
        return nodeReport
    }

    enum Result {
        case success([String: Produced], NodeReport.Status)
        case failure(String)
    }

    /// One execution: from memory, from disk, or by running the node.
    private func executeOnce(_ node: Graph.Node, parameters: [String: ParameterValue], values: [String: Value],
                             key: String, item: BatchItem?) -> Result {
        let d = node.description
        let outputKeys = Dictionary(uniqueKeysWithValues: d.outputs.map { ($0.name, Fingerprint.hash(key + "\n" + $0.name)) })

        if !d.alwaysRuns {
            // Memory, then disk; every output must be found.
            var found: [String: Produced] = [:]
            var fromDisk = false
            for (name, outputKey) in outputKeys {
                if let value = memory[outputKey] {
                    found[name] = produced(value, key: outputKey)
                } else if let cache = options.cache {
                    switch cache.read(outputKey) {
                    case .hit(let value):
                        found[name] = produced(value, key: outputKey)
                        memory[outputKey] = value
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

        if item == nil { options.reporter?.nodeStarted(node.name, type: d.name, item: nil, itemCount: nil) }
        let context = ExecutionContext(executor: self, node: node, parameters: parameters, values: values, key: key, item: item)
        let outputs: [String: Value]
        do {
            outputs = try node.entry.implementation.run(context)
        } catch NodeError.cancelled {
            return .failure("cancelled")
        } catch {
            return .failure("\(error)")
        }
        var produced: [String: Produced] = [:]
        for port in d.outputs {
            guard let value = outputs[port.name] else { return .failure("produced no '\(port.name)' output") }
            let outputKey = outputKeys[port.name]!
            memory[outputKey] = value
            produced[port.name] = self.produced(value, key: outputKey)
            if let cache = options.cache, !d.alwaysRuns, ResultCache.isStorable(value) {
                do { try cache.write(value, key: outputKey) } catch { warn("could not store the result of '\(node.name)' in the cache: \(error)") }
            }
        }
        return .success(produced, .ran)
    }

    /// A result; lists get per-item content keys and batch items named after their source files.
    private func produced(_ value: Value, key: String) -> Produced {
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

    /// The part of a node's key that does not depend on its inputs.
    private func key(_ node: Graph.Node, parameters: [String: ParameterValue]) throws -> String {
        let d = node.description
        var lines = ["sdflow-node-v1", "type \(d.name)", "pack \(node.entry.pack.name) \(node.entry.pack.version)", "version \(d.version)",
                     "convolutions \(ConvolutionMode.current.rawValue)"]
        if BLAS.precision != .float32 { lines.append("gemm \(BLAS.precision.rawValue)") }
        for spec in d.parameters {
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
        case .integer(let i): return "number \(Double(i))"
        case .number(let d): return "number \(d)"
        case .text(let s): return "text \(s.debugDescription)"
        case .boolean(let b): return "boolean \(b)"
        }
    }

    private func combine(_ base: String, _ inputKeys: [String: String]) -> String {
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
        return RunInfo(workflowText: graph.workflow.text, workflowPath: graph.workflow.path, parameters: graph.parameterValues, upstream: upstream,
                       sourceImage: graph.workflow.sourceImage)
    }

    fileprivate func progress(_ node: String, completed: Int, total: Int) {
        options.reporter?.nodeProgress(node, completed: completed, total: total)
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
    var isCancelled: Bool { executor.options.cancellation.isCancelled }
    func warn(_ message: String) { executor.warn("\(node.name): \(message)") }
    var runInfo: RunInfo { executor.runInfo(for: node.name) }
}
