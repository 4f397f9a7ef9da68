import DiffusionNodes
import ImageNodes
import NodeKit
import TensorCore
import WorkflowEngine

/// The node packs sdflow runs with.
enum Engine {
    /// The built-in packs.
    static let builtinPacks: [NodePack] = [ImageNodes.pack, DiffusionNodes.pack]

    /// A registry with the built-in packs and the plugins found in `pluginFolders`.
    static func registry(pluginFolders: [String]) throws -> NodeRegistry {
        let registry = NodeRegistry()
        for pack in builtinPacks { try registry.register(pack) }
        return registry
    }

    static func setThreads(_ count: Int) { Parallel.setThreadCount(count) }
}
