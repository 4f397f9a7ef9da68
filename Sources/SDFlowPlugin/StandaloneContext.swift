import NodeKit

/// Runs a node outside sdflow, for a pack's own tests: inputs and parameters are given as
/// values, and parameters not given take the node's defaults.
///
///     let outputs = try StandaloneContext.run(Brighten.self, inputs: ["image": .image(photo)],
///                                             parameters: ["factor": .number(1.5)])
public final class StandaloneContext: NodeContext {
    public let description: NodeDescription
    public var inputs: [String: Value]
    public var parameters: [String: ParameterValue]
    /// What the node warned about, in order.
    public private(set) var warnings: [String] = []
    public let models = ModelCache()

    public init(_ node: any Node.Type, inputs: [String: Value] = [:], parameters: [String: ParameterValue] = [:]) {
        self.description = node.description
        self.inputs = inputs
        self.parameters = parameters
    }

    /// Runs `node` once with these inputs and parameters and returns its outputs.
    public static func run(_ node: any Node.Type, inputs: [String: Value] = [:],
                           parameters: [String: ParameterValue] = [:]) throws -> [String: Value] {
        try node.run(StandaloneContext(node, inputs: inputs, parameters: parameters))
    }

    public var nodeName: String { description.name }
    public var batchItem: BatchItem? { nil }
    public var executionKey: String { "" }
    public var runInfo: RunInfo { RunInfo(workflowText: "", workflowPath: "", parameters: [:], upstream: []) }
    public var isCancelled: Bool { false }
    public func input(_ name: String) -> Value? { inputs[name] }
    public func parameter(_ name: String) -> ParameterValue? { parameters[name] ?? description.parameter(name)?.defaultValue }
    public func progress(completed: Int, total: Int) {}
    public func warn(_ message: String) { warnings.append(message) }
}
