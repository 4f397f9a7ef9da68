import NodeKit

/// How a checked graph runs: which nodes run once and which once per item of the batch.
///
/// A node whose input is a list while its port takes one value runs once per item, and so does
/// every node downstream of such a node. Everything else (models, a fixed prompt's encoding)
/// runs once. The lists that the per-item nodes map over are the batch's sources; their items
/// pair up by position (as two folders sorted by file name do), so they must be equally long.
/// A node that reads one file per item (`{stem}` in an input path) runs once per item too.
struct ExecutionPlan {
    /// Nodes that run once, inputs first.
    let once: [Graph.Node]
    /// Nodes that run once per batch item, inputs first.
    let perItem: [Graph.Node]
    /// The names of `perItem`.
    let perItemNames: Set<String>
    /// The list-producing nodes the batch maps over, in graph order; the first one names the
    /// items (stem, source file, shard).
    let sources: [Graph.Node]
    /// Sources that produce their items one at a time, when the batch reaches each item
    /// (`StreamingListNode`); the others produce their whole list first.
    let streamed: Set<String>
    /// The output ports of each source that per-item nodes map over.
    let mappedPorts: [String: Set<String>]

    /// A graph the executor cannot run.
    struct Unsupported: Error, CustomStringConvertible {
        let description: String
    }

    init(graph: Graph) throws {
        var once: [Graph.Node] = [], perItem: [Graph.Node] = [], sources = Set<String>()
        var itemNodes = Set<String>(), wholeList = Set<String>()
        var mappedPorts: [String: Set<String>] = [:]
        for node in graph.ordered {
            var runsPerItem = ExecutionPlan.readsFilePerItem(node)
            for (port, edge) in node.inputs.sorted(by: { $0.key < $1.key }) {
                let takesList = node.description.input(port)?.type.isList ?? false
                if itemNodes.contains(edge.node) {
                    guard !takesList else {
                        throw Unsupported(description: "input '\(port)' of '\(node.name)' takes a whole list, but '\(edge.node)' runs once per batch item; "
                                          + "gathering a batch's results into one node is not supported")
                    }
                    runsPerItem = true
                } else if edge.type.isList {
                    if takesList {
                        wholeList.insert(edge.node)
                    } else {
                        runsPerItem = true
                        sources.insert(edge.node)
                        mappedPorts[edge.node, default: []].insert(edge.output)
                    }
                }
            }
            if runsPerItem {
                perItem.append(node)
                itemNodes.insert(node.name)
            } else {
                once.append(node)
            }
        }
        if sources.isEmpty, let node = perItem.first(where: ExecutionPlan.readsFilePerItem) {
            throw Unsupported(description: "'\(node.name)' reads one file per batch item ({stem} or {index} in a path), but nothing in the workflow is a batch "
                              + "(e.g. load_images of a folder)")
        }
        self.once = once
        self.perItem = perItem
        perItemNames = itemNodes
        self.sources = graph.ordered.filter { sources.contains($0.name) }
        self.mappedPorts = mappedPorts
        streamed = Set(self.sources.filter { $0.entry.implementation.stream != nil && !wholeList.contains($0.name) }.map(\.name))
    }

    var hasBatch: Bool { !perItem.isEmpty }

    /// Whether an input path of the node names each batch item's own file (`{stem}`, `{index}`).
    static func readsFilePerItem(_ node: Graph.Node) -> Bool {
        node.description.parameters.contains { spec in
            guard case .inputPath = spec.kind, case .text(let path)? = node.parameters[spec.name] else { return false }
            return PathTemplate.hasPlaceholders(path)
        }
    }
}
