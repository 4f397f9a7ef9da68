import DiffusionNodes
import ImageNodes
import NodeKit
import TensorCore
import WorkflowEngine

/// The node packs sdflow runs with.
enum Engine {
    /// The built-in packs.
    static let builtinPacks: [NodePack] = [ImageNodes.pack, DiffusionNodes.pack]

    /// A registry with the built-in packs and the plugins found in `pluginFolders`,
    /// `SDFLOW_PLUGIN_PATH` and the user plugin folder.
    static func registry(pluginFolders: [String]) throws -> NodeRegistry {
        let registry = NodeRegistry()
        for pack in builtinPacks { try registry.register(pack) }
        for library in PluginLoader.libraries(in: PluginLoader.folders(explicit: pluginFolders)) {
            try registry.register(try PluginLoader.load(library))
        }
        return registry
    }

    static func setThreads(_ count: Int) { Parallel.setThreadCount(count) }
}
