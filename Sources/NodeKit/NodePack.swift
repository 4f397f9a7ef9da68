/// A node type as the engine runs it: its description and its run function. Built-in nodes
/// come from `Node` types; plugin nodes from a shared library's C functions.
/// `@unchecked Sendable`: its functions are a node type's static functions or a plugin's C entry
/// points, which hold no state of their own; what they share lives in the context they are given.
public struct NodeImplementation: @unchecked Sendable {
    public let description: NodeDescription
    public let run: (NodeContext) throws -> [String: Value]
    /// For list producers that stream (`StreamingListNode`): list the items, produce one.
    public let stream: Stream?
    /// For nodes that write files (`FileWritingNode`); nil: the engine takes the values of the
    /// node's output-path parameters as the files it writes.
    public let files: Files?
    /// For nodes that describe generation settings (`GenerationDescribing`).
    public let describe: ((RunInfo.UpstreamNode, [String: RunInfo.UpstreamNode]) -> [String: String])?

    /// How a streaming list producer lists and produces its items.
    public struct Stream {
        public let items: (NodeContext) throws -> [ListItem]
        public let produce: (ListItem, NodeContext) throws -> [String: Value]
    }

    /// The files a node writes, and whether they are already up to date.
    public struct Files {
        public let paths: (NodeContext) throws -> [String]
        public let isUpToDate: (NodeContext) -> Bool
    }

    public init(description: NodeDescription, run: @escaping (NodeContext) throws -> [String: Value],
                stream: Stream? = nil, files: Files? = nil,
                describe: ((RunInfo.UpstreamNode, [String: RunInfo.UpstreamNode]) -> [String: String])? = nil) {
        self.description = description
        self.run = run
        self.stream = stream
        self.files = files
        self.describe = describe
    }

    /// The implementation of a `Node` type.
    public init(_ node: any Node.Type) {
        let stream = (node as? any StreamingListNode.Type).map { Stream(items: $0.items, produce: $0.produce) }
        let files = (node as? any FileWritingNode.Type).map { Files(paths: $0.outputFiles, isUpToDate: $0.isUpToDate) }
        let describe = (node as? any GenerationDescribing.Type).map { type in
            { (node: RunInfo.UpstreamNode, upstream: [String: RunInfo.UpstreamNode]) in type.generationParameters(node, upstream: upstream) }
        }
        self.init(description: node.description, run: node.run, stream: stream, files: files, describe: describe)
    }
}

/// A named, versioned set of node types: a built-in pack (Plugins/*) or one loaded from a
/// shared library. The pack's name and version enter the cache keys of its nodes.
public struct NodePack: Sendable {  // Sendable: constants and `NodeImplementation`s
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
