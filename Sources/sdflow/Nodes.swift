import ArgumentParser
import NodeKit
import WorkflowEngine

/// `sdflow nodes [TYPE]`: the node types, or one type's ports and parameters.
struct Nodes: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the node types, or describe one.")

    @Argument(help: "A node type to describe.")
    var type: String?

    @Option(help: "A folder of node-pack plugins to load (also SDFLOW_PLUGIN_PATH).")
    var plugins: [String] = []

    @Flag(help: "Print the reference of every node type as Markdown (docs/nodes.md).")
    var markdown = false

    func run() throws {
        let registry = try Engine.registry(pluginFolders: plugins)
        if markdown {
            print(NodeReference.markdown(registry))
            return
        }
        guard let type else {
            let width = registry.packs.flatMap { $0.nodes.map(\.description.name.count) }.max() ?? 0
            for pack in registry.packs {
                print("\(pack.name) \(pack.version)\(pack.origin.map { " (plugin \($0))" } ?? " (built in)"):")
                for node in pack.nodes.map({ $0.description }).sorted(by: { $0.name < $1.name }) {
                    print("  \(node.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(node.summary)")
                }
            }
            return
        }
        guard let entry = registry.entry(type) else {
            throw ValidationError("unknown node type '\(type)'; `sdflow nodes` lists them")
        }
        let d = entry.description
        let origin = entry.pack.origin.map { ", plugin \($0)" } ?? ""
        print("\(d.name) (pack \(entry.pack.name) \(entry.pack.version)\(origin), version \(d.version))\(d.isOutput ? ", output node" : "")")
        print("  \(d.summary)")
        if !d.inputs.isEmpty {
            print("inputs:")
            for p in d.inputs { print("  \(p.name): \(p.type)\(p.optional ? " (optional)" : "") — \(p.help)") }
        }
        if !d.outputs.isEmpty {
            print("outputs:")
            for p in d.outputs { print("  \(p.name): \(p.type) — \(p.help)") }
        }
        if !d.parameters.isEmpty {
            print("parameters:")
            for p in d.parameters {
                let value = p.defaultValue.map { "default \($0.description.isEmpty ? "\"\"" : $0.description)" } ?? "required"
                print("  \(p.name): \(p.kind), \(value) — \(p.help)")
            }
        }
    }
}

/// `sdflow graph FILE`: the workflow as a Mermaid or DOT diagram.
struct GraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "graph", abstract: "Print a workflow's graph as Mermaid or DOT.")

    /// The diagram languages.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case mermaid, dot
    }

    @OptionGroup var options: WorkflowOptions

    @Option(help: "The diagram language.")
    var format = Format.mermaid

    func run() throws {
        let graph = try options.checkedGraph(registry: try Engine.registry(pluginFolders: options.plugins))
        let nodes = graph.workflow.nodes.compactMap { graph.nodes[$0.name] }
        switch format {
        case .dot:
            print("digraph workflow {\n  rankdir=LR;")
            for node in nodes { print("  \"\(node.name)\" [label=\"\(node.name)\\n\(node.description.name)\"];") }
            for node in nodes {
                for (port, edge) in node.inputs.sorted(by: { $0.key < $1.key }) {
                    print("  \"\(edge.node)\" -> \"\(node.name)\" [label=\"\(edge.output) → \(port)\"];")
                }
            }
            print("}")
        case .mermaid:
            print("flowchart LR")
            for node in nodes { print("  \(node.name)[\"\(node.name)<br/><small>\(node.description.name)</small>\"]") }
            for node in nodes {
                for (port, edge) in node.inputs.sorted(by: { $0.key < $1.key }) {
                    print("  \(edge.node) -- \"\(edge.output) → \(port)\" --> \(node.name)")
                }
            }
        }
    }
}

/// `sdflow cache [info|clear]`: the result cache's size and entries, or clearing it.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cache", abstract: "Show the result cache, or clear it.",
                                                    subcommands: [Info.self, Clear.self], defaultSubcommand: Info.self)

    /// The folder option both subcommands take.
    struct Folder: ParsableArguments {
        @Option(help: "The cache folder.")
        var cacheDir: String?

        func open() throws -> ResultCache { try ResultCache(folder: cacheDir ?? ResultCache.defaultFolder) }
    }

    /// `sdflow cache info` (the default): size and the most recently used entries.
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the cache's size and entries.")
        @OptionGroup var folder: Folder

        func run() throws {
            let cache = try folder.open()
            let entries = cache.entries()
            let total = entries.reduce(0) { $0 + $1.size }
            print("\(cache.folder): \(entries.count) entries, \(String(format: "%.1f", Double(total) / 1e6)) MB")
            for entry in entries.prefix(20) {
                print("  \(entry.key.prefix(16))…  \(String(format: "%9.1f KB", Double(entry.size) / 1e3))  last used \(entry.lastUsed)")
            }
            if entries.count > 20 { print("  … and \(entries.count - 20) more") }
        }
    }

    /// `sdflow cache clear`: removes every entry.
    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove every cached result.")
        @OptionGroup var folder: Folder

        func run() throws {
            let cache = try folder.open()
            try cache.clear()
            print("cleared \(cache.folder)")
        }
    }
}
