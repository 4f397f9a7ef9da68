/// A node type as the engine runs it: its description and its run function. Built-in nodes
/// come from `Node` types; plugin nodes from a shared library's C functions.
public struct NodeImplementation: @unchecked Sendable {
    public let description: NodeDescription
    public let run: (NodeContext) throws -> [String: Value]

    public init(description: NodeDescription, run: @escaping (NodeContext) throws -> [String: Value]) {
        self.description = description
        self.run = run
    }

    /// The implementation of a `Node` type.
    public init(_ node: any Node.Type) {
        self.init(description: node.description, run: node.run)
    }
}

/// A named, versioned set of node types: a built-in pack (Plugins/*) or one loaded from a
/// shared library. The pack's name and version enter the cache keys of its nodes.
public struct NodePack: @unchecked Sendable {
    public let name: String
    public let version: String
    public let nodes: [NodeImplementation]
    /// The shared library a plugin pack was loaded from (nil for built-in packs).
    public let origin: String?

    public init(name: String, version: String, nodes: [any Node.Type]) {
        self.init(name: name, version: version, implementations: nodes.map(NodeImplementation.init), origin: nil)
    }

    public init(name: String, version: String, implementations: [NodeImplementation], origin: String?) {
        self.name = name
        self.version = version
        self.nodes = implementations
        self.origin = origin
    }
}
