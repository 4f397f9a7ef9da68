import Foundation
import NodeKit
import TensorCore

/// The batch half of the executor: the items (paired across sources, this shard's), and each item
/// taken through every per-item node before the next one starts.
extension Executor {
    /// The items this run takes through the per-item nodes.
    struct Batch {
        /// One item: its place in the whole list, what names it, and for each streamed source
        /// the file it is read from.
        struct Entry {
            let item: BatchItem
            /// The first source's file relative to its folder (what `--shard` hashes).
            let source: String
            let files: [String: ListItem]
        }

        var entries: [Entry] = []
        /// Items in the whole batch, before the shard chose some.
        var total = 0
    }

    /// What the batch did per node, summed over its items.
    struct Counts {
        var hits = 0, computed = 0, failures = 0, skipped = 0
        var seconds = 0.0
        var errors: [String] = []
        var cancelled = false
    }

    /// A batch whose lists cannot be paired.
    struct BatchError: Error, CustomStringConvertible {
        let description: String
    }

    /// The batch's items (this shard's), paired across the sources by position.
    func makeBatch(_ plan: ExecutionPlan) throws -> Batch {
        let sources = plan.sources.map(\.name)
        guard plan.hasBatch, let first = sources.first, sources.allSatisfy({ listed[$0] != nil || results[$0] != nil }) else { return Batch() }
        var lengths: [(list: String, count: Int)] = []
        for source in sources {
            if let items = listed[source] {
                lengths.append((source, items.count))
            } else {
                for port in (plan.mappedPorts[source] ?? []).sorted() {
                    lengths.append(("\(source).\(port)", results[source]?[port]?.items?.count ?? 0))
                }
            }
        }
        guard Set(lengths.map(\.count)).count <= 1 else {
            throw BatchError(description: "the lists of one batch pair up by position, but they have different lengths: "
                             + lengths.map { "'\($0.list)' \($0.count) items" }.joined(separator: ", "))
        }
        var batch = Batch()
        batch.total = lengths.first?.count ?? 0
        for index in 0..<batch.total {
            var files: [String: ListItem] = [:]
            for source in sources { if let items = listed[source] { files[source] = items[index] } }
            let item: BatchItem, relativePath: String
            if let file = files[first] {
                item = BatchItem(index: index, stem: file.stem)
                relativePath = file.relativePath
            } else {
                let port = (plan.mappedPorts[first] ?? []).min() ?? ""
                let produced = results[first]?[port]?.items?[index]
                item = produced?.batch ?? BatchItem(index: index, stem: String(format: "item%03d", index))
                relativePath = produced?.value.flatMap(Executor.sourceFile)?.lastPathComponent ?? item.stem
            }
            if let shard = options.shard, !shard.contains(relativePath) { continue }
            batch.entries.append(Batch.Entry(item: item, source: relativePath, files: files))
        }
        return batch
    }

    /// The file an image or mask was loaded from.
    static func sourceFile(_ value: Value) -> URL? {
        switch value {
        case .image(let image), .mask(let image): return image.metadata[ImageMetadataKey.source].map { URL(fileURLWithPath: $0) }
        default: return nil
        }
    }

    // MARK: - Running the batch

    func runBatch(_ batch: Batch, plan: ExecutionPlan) {
        report.batchSize = batch.total
        if let missing = plan.sources.first(where: { listed[$0.name] == nil && results[$0.name] == nil })?.name {
            for node in plan.perItem {
                let skipped = NodeReport(name: node.name, type: node.description.name, status: .skipped, seconds: 0, items: nil,
                                         computed: 0, errors: ["its batch comes from '\(missing)', which failed"], notes: [])
                report.nodes.append(skipped)
                options.reporter?.nodeFinished(skipped)
            }
            return
        }
        var counts: [String: Counts] = [:]
        options.cancellation.isInBatch = true
        for (position, entry) in batch.entries.enumerated() {
            if options.cancellation.stopsAfterItem {
                report.cancelled = true
                break
            }
            options.cancellation.isInBatch = position + 1 < batch.entries.count
            options.reporter?.itemStarted(entry.item, position: position + 1, count: batch.entries.count)
            let itemReport = runItem(entry, plan: plan, counts: &counts)
            BufferPool.releaseFreeHeapPages()  // the item's memory goes back, so the batch's does not grow
            report.items.append(itemReport)
            options.reporter?.itemFinished(itemReport, position: position + 1, count: batch.entries.count)
            if itemReport.status == .cancelled {
                report.cancelled = true
                break
            }
        }
        options.cancellation.isInBatch = false

        // One report per node, summed over the items; streamed sources count the items they read.
        let done = report.items.count
        for source in plan.streamed {
            guard let index = report.nodes.firstIndex(where: { $0.name == source }), let c = counts[source] else { continue }
            report.nodes[index].computed = c.computed
            report.nodes[index].seconds += c.seconds
            report.nodes[index].errors += c.errors
            if c.failures > 0 { report.nodes[index].status = c.failures == done ? .failed : .partial }
        }
        for node in plan.perItem {
            let c = counts[node.name] ?? Counts()
            var nodeReport = NodeReport(name: node.name, type: node.description.name, status: .ran, seconds: c.seconds, items: done,
                                        computed: c.computed, errors: c.errors, notes: [])
            if c.cancelled {
                nodeReport.status = .cancelled
            } else if options.explainOnly {
                nodeReport.status = c.hits == done ? .willHit : .willRun
                nodeReport.notes.append("runs once per item; \(c.hits) of \(done) items are in the cache")
            } else if done > 0 && c.failures + c.skipped == done {
                nodeReport.status = .failed
            } else if c.failures + c.skipped > 0 {
                nodeReport.status = .partial
                if c.skipped > 0 { nodeReport.notes.append("\(c.skipped) item(s) skipped because an input failed") }
            } else {
                nodeReport.status = c.hits == done ? .diskHit : (c.hits > 0 ? .mixed : .ran)
            }
            report.nodes.append(nodeReport)
            options.reporter?.nodeFinished(nodeReport)
        }
    }

    /// One item through every per-item node; its results are dropped when it returns.
    private func runItem(_ entry: Batch.Entry, plan: ExecutionPlan, counts: inout [String: Counts]) -> ItemReport {
        let started = Date()
        var item = ItemReport(index: entry.item.index, stem: entry.item.stem, source: entry.source, status: .done, outputs: [], seconds: 0,
                              computed: 0, cacheHits: 0, errors: [])
        // This item's results: the per-item nodes' and the sources' values for it.
        var local: [String: [String: Produced]] = [:]
        if itemIsUpToDate(entry, plan: plan, local: &local, item: &item, counts: &counts) {
            for node in plan.perItem { counts[node.name, default: Counts()].hits += 1 }
            item.cacheHits = plan.perItem.count
            item.status = .cached
            item.outputs = plan.perItem.flatMap { files.planned($0.name, entry.item) }
            item.seconds = Date().timeIntervalSince(started)
            return item
        }

        nodes: for node in plan.perItem {
            let name = node.name
            let nodeStarted = Date()
            defer { counts[name, default: Counts()].seconds += Date().timeIntervalSince(nodeStarted) }
            var values: [String: Value] = [:], inputKeys: [String: String] = [:]
            for (port, edge) in node.inputs {
                let input = itemInput(edge, port: port, of: node, plan: plan, entry: entry, local: &local, item: &item, counts: &counts)
                guard let input, let value = input.value else {
                    // Reported where it failed; the item fails with it.
                    counts[name, default: Counts()].skipped += 1
                    if item.errors.isEmpty { item.errors.append("\(name): input '\(port)' from '\(edge.node)' is not available") }
                    continue nodes
                }
                values[port] = value
                inputKeys[port] = input.key
            }
            let parameters = keys.parameters(of: node, item: entry.item)
            let key: String
            do {
                key = NodeKeys.combine(try keys.baseKey(node, parameters: parameters), inputKeys)
            } catch {
                counts[name, default: Counts()].failures += 1
                counts[name, default: Counts()].errors.append("\(entry.item.stem): cannot fingerprint its files: \(error)")
                item.errors.append("\(name): cannot fingerprint its files: \(error)")
                continue
            }
            let context = ExecutionContext(executor: self, node: node, parameters: parameters, values: values, key: key, item: entry.item)
            switch executeOnce(context, remember: false) {
            case .success(let outputs, let status):
                local[name] = outputs
                switch status {
                case .memoryHit, .diskHit, .willHit:
                    counts[name, default: Counts()].hits += 1
                    item.cacheHits += 1
                case .ran, .willRun:
                    if status == .ran { counts[name, default: Counts()].computed += 1 }
                    item.computed += 1
                default: break
                }
            case .cancelled:
                counts[name, default: Counts()].cancelled = true
                item.status = .cancelled
                break nodes
            case .failure(let message):
                counts[name, default: Counts()].failures += 1
                counts[name, default: Counts()].errors.append("\(entry.item.stem): \(message)")
                item.errors.append("\(name): \(message)")
            }
        }
        item.outputs = plan.perItem.flatMap { files.planned($0.name, entry.item) }
        if item.status != .cancelled {
            if !item.errors.isEmpty {
                item.status = .failed
            } else if options.explainOnly {
                item.status = item.computed > 0 ? .willRun : .willHit
            } else {
                item.status = item.computed > 0 ? .done : .cached
            }
        }
        item.seconds = Date().timeIntervalSince(started)
        return item
    }

    /// What an input edge of a per-item node gives this item: another per-item node's result, the
    /// item of a source list (read now from its file the first time), or a result computed once.
    private func itemInput(_ edge: Graph.Edge, port: String, of node: Graph.Node, plan: ExecutionPlan, entry: Batch.Entry,
                           local: inout [String: [String: Produced]], item: inout ItemReport, counts: inout [String: Counts]) -> Produced? {
        if plan.perItemNames.contains(edge.node) { return local[edge.node]?[edge.output] }
        if plan.mappedPorts[edge.node]?.contains(edge.output) == true, node.description.input(port)?.type.isList == false {
            if local[edge.node] == nil {
                local[edge.node] = sourceValues(edge, used: plan.mappedPorts[edge.node] ?? [], entry: entry, item: &item, counts: &counts)
            }
            return local[edge.node]?[edge.output]
        }
        return results[edge.node]?[edge.output]
    }

    /// Whether every file this item's output nodes write already holds this item's result. The
    /// keys follow from the inputs' keys alone, so nothing is computed or read from the cache (only
    /// the item's source file and the outputs): a rerun or a resubmitted shard passes over finished
    /// items quickly. A key that came out different would only make the item run as usual.
    private func itemIsUpToDate(_ entry: Batch.Entry, plan: ExecutionPlan, local: inout [String: [String: Produced]],
                                item: inout ItemReport, counts: inout [String: Counts]) -> Bool {
        let sinks = plan.perItem.filter(\.description.isOutput).compactMap { node in node.entry.implementation.files.map { (node, $0) } }
        guard !options.explainOnly, !sinks.isEmpty, sinks.count == plan.perItem.filter(\.description.isOutput).count else { return false }
        var itemKeys: [String: String] = [:]
        for node in plan.perItem {
            var inputKeys: [String: String] = [:]
            for (port, edge) in node.inputs {
                if let upstream = itemKeys[edge.node] {
                    inputKeys[port] = NodeKeys.output(upstream, edge.output)  // as executeOnce keys each output
                } else {
                    guard let input = itemInput(edge, port: port, of: node, plan: plan, entry: entry, local: &local, item: &item, counts: &counts),
                          input.value != nil else { return false }
                    inputKeys[port] = input.key
                }
            }
            guard let base = try? keys.baseKey(node, parameters: keys.parameters(of: node, item: entry.item)) else { return false }
            itemKeys[node.name] = NodeKeys.combine(base, inputKeys)
        }
        return sinks.allSatisfy { node, files in
            guard let key = itemKeys[node.name] else { return false }
            let context = ExecutionContext(executor: self, node: node, parameters: keys.parameters(of: node, item: entry.item), values: [:],
                                           key: key, item: entry.item)
            return files.isUpToDate(context)
        }
    }

    /// A source's values for one item: read now from its file (streamed sources), or taken
    /// from the list it produced. A failure of a port the batch uses is recorded once, on the
    /// source and on the item (load_images without a mask folder gives no masks: that is no
    /// failure unless something uses them).
    private func sourceValues(_ edge: Graph.Edge, used: Set<String>, entry: Batch.Entry, item: inout ItemReport,
                              counts: inout [String: Counts]) -> [String: Produced] {
        let node = graph.node(feeding: edge), source = node.name
        var values: [String: Produced] = [:]
        var errors = Set<String>()
        if let file = entry.files[source], let stream = node.entry.implementation.stream {
            let started = Date()
            let parameters = keys.parameters(of: node)
            let context = ExecutionContext(executor: self, node: node, parameters: parameters, values: [:], key: "", item: entry.item)
            let sourceKey = (try? keys.baseKey(node, parameters: parameters)).map { NodeKeys.combine($0, [:]) } ?? ""
            var produced: [String: Value]
            do { produced = try stream.produce(file, context) } catch {
                produced = Dictionary(uniqueKeysWithValues: node.description.outputs.map { ($0.name, Value.failed("\(error)", source: file.path)) })
            }
            counts[source, default: Counts()].computed += 1
            counts[source, default: Counts()].seconds += Date().timeIntervalSince(started)
            for port in node.description.outputs {
                // Keys as for an item of the whole list: by content, else by position.
                let listKey = NodeKeys.output(sourceKey, port.name)
                switch produced[port.name] {
                case .failed(let message, _)?:
                    values[port.name] = Produced(value: nil, key: Fingerprint.hash(listKey + "\nfailed item \(entry.item.index)"), items: nil)
                    if used.contains(port.name) { errors.insert(message) }
                case let value?:
                    values[port.name] = Produced(value: value, key: ContentKey.of(value) ?? Fingerprint.hash(listKey + "\nitem \(entry.item.index)"), items: nil)
                case nil:
                    if used.contains(port.name) { errors.insert("produced no '\(port.name)' value") }
                }
            }
        } else {
            for (port, produced) in results[source] ?? [:] {
                guard let list = produced.items, entry.item.index < list.count else { continue }
                let one = list[entry.item.index]
                values[port] = Produced(value: one.value, key: one.key, items: nil)
                if let error = one.error, used.contains(port) { errors.insert(error) }
            }
        }
        if !errors.isEmpty {
            let message = errors.sorted().joined(separator: "; ")
            counts[source, default: Counts()].failures += 1
            counts[source, default: Counts()].errors.append("\(entry.item.stem): \(message)")
            item.errors.append("\(source): \(message)")
        }
        return values
    }
}

extension ValueType {
    /// Whether this is a list type.
    var isList: Bool { if case .list = self { return true }; return false }
}
