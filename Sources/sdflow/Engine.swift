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

    /// The opt-in fast mode: Winograd F(4x4,3x3) convolutions, and GEMMs in bfloat16 with
    /// float32 accumulation on CPUs with AVX-512 BF16; up to 2 GB of freed buffers kept for reuse.
    static func useFastMode() {
        ConvolutionMode.current = .fast
        if GEMMPrecision.bfloat16InHardware { BLAS.precision = .bfloat16 }
        BufferPool.capacity = 2 << 30
    }
}
