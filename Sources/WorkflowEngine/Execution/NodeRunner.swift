import Foundation
import ImageIO
import NodeKit

/// One execution of a node: from this run's memory, from the disk cache, or by running it; and
/// the context a running node sees.
extension Executor {
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
        let outputKeys = Dictionary(uniqueKeysWithValues: d.outputs.map { ($0.name, NodeKeys.output(key, $0.name)) })

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
        let writes = files.planned(node.name, context.batchItem)
        if let again = writes.first(where: files.written.contains) {
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
        files.written.formUnion(writes)
        var produced: [String: Produced] = [:]
        for port in d.outputs {
            guard let value = outputs[port.name] else { return .failure("produced no '\(port.name)' output") }
            let outputKey = NodeKeys.output(key, port.name)
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
