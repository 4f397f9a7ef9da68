import Foundation
import NodeKit

/// What the executor tells: warnings, progress, why a node will run (explain mode), and the run
/// information output nodes record.
extension Executor {
    func warn(_ message: String) {
        report.warnings.append(message)
        options.reporter?.warning(message)
    }

    /// Explain mode: why a node will run.
    func explain(_ node: Graph.Node) -> [String] {
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

    /// The workflow, its parameters, and the nodes upstream of `name` with their resolved parameters.
    func runInfo(for name: String) -> RunInfo {
        var upstream: [RunInfo.UpstreamNode] = []
        var seen = Set<String>()
        var queue = [name]
        while let current = queue.popLast() {
            guard seen.insert(current).inserted, let node = graph.nodes[current] else { continue }
            let parameters = keys.parameters(of: node)
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

    func progress(_ node: String, completed: Int, total: Int, note: String? = nil) {
        options.reporter?.nodeProgress(node, completed: completed, total: total, note: note)
    }
}


