import NodeKit

/// The node types sdflow knows, by type name, and the pack each comes from.
public final class NodeRegistry: @unchecked Sendable {
    /// A registered node type.
    public struct Entry {
        public let pack: NodePack
        public let node: any Node.Type
        public var description: NodeDescription { node.description }
    }

    public private(set) var packs: [NodePack] = []
    private var entries: [String: Entry] = [:]

    public init() {}

    /// A registration problem, naming the pack.
    public struct RegistrationError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Adds a pack; a node type name already taken by another pack is an error.
    public func register(_ pack: NodePack) throws {
        for node in pack.nodes {
            let name = node.description.name
            if let existing = entries[name] {
                throw RegistrationError(message: "node type '\(name)' of pack '\(pack.name)' is already defined by pack '\(existing.pack.name)'")
            }
        }
        for node in pack.nodes { entries[node.description.name] = Entry(pack: pack, node: node) }
        packs.append(pack)
    }

    public func entry(_ name: String) -> Entry? { entries[name] }

    /// All node type names, sorted.
    public var names: [String] { entries.keys.sorted() }
}
