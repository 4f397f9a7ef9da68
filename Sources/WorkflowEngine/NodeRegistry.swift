import NodeKit

/// The node types sdflow knows, by type name, and the pack each comes from (built once, before
/// workflows are checked against it).
public struct NodeRegistry: Sendable {
    /// A registered node type.
    public struct Entry: Sendable {
        public let pack: NodePack
        public let implementation: NodeImplementation
        public var description: NodeDescription { implementation.description }
    }

    public private(set) var packs: [NodePack] = []
    private var entries: [String: Entry] = [:]

    public init() {}

    /// A registration problem, naming the pack.
    public struct RegistrationError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Adds a pack; a node type name already taken by another pack (or twice by this one) is
    /// an error naming both packs and the plugin files.
    public mutating func register(_ pack: NodePack) throws {
        var names = Set<String>()
        for node in pack.nodes {
            let name = node.description.name
            let origin = pack.origin.map { " (\($0))" } ?? ""
            if let existing = entries[name] {
                let other = existing.pack.origin.map { " (\($0))" } ?? ""
                throw RegistrationError(message: "node type '\(name)' of pack '\(pack.name)'\(origin) is already defined by pack '\(existing.pack.name)'\(other)")
            }
            guard names.insert(name).inserted else {
                throw RegistrationError(message: "pack '\(pack.name)'\(origin) defines node type '\(name)' twice")
            }
        }
        for node in pack.nodes { entries[node.description.name] = Entry(pack: pack, implementation: node) }
        packs.append(pack)
    }

    public func entry(_ name: String) -> Entry? { entries[name] }

    /// All node type names, sorted.
    public var names: [String] { entries.keys.sorted() }
}
