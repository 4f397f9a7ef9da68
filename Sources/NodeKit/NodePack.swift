/// A named, versioned set of node types: a built-in pack (Plugins/*) or one loaded from a
/// shared library. The pack's name and version enter the cache keys of its nodes.
public struct NodePack: @unchecked Sendable {
    public let name: String
    public let version: String
    public let nodes: [any Node.Type]

    public init(name: String, version: String, nodes: [any Node.Type]) {
        self.name = name
        self.version = version
        self.nodes = nodes
    }
}
