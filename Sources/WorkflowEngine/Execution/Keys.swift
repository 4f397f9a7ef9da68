import Foundation
import ImageIO
import NodeKit
import TensorCore

/// The keys of one run: every node's parameters with `seed: random` drawn (before any key is
/// computed, and reported), each batch item's parameters, and the cache key of each execution.
///
/// A key is a SHA-256 of the node's type, pack and implementation version, the compute settings
/// that change results, its parameters (input files by content fingerprint) and its inputs' keys.
struct NodeKeys {
    /// Every node's parameters, seeds drawn, by node name.
    private let resolved: [String: [String: ParameterValue]]
    /// The seeds drawn for `seed: random`, by node name.
    let seeds: [String: Int]
    /// `ComputeSettings.fingerprint` of the run.
    private let compute: [String]
    /// `baseKey` by node name (and, for nodes that read one file per item, the file).
    private var baseKeys: [String: String] = [:]
    /// Fingerprints of files that have not changed since an earlier run.
    private let fingerprints: FileFingerprints?

    init(graph: Graph, compute: ComputeSettings, fingerprints: FileFingerprints? = nil) {
        var resolved: [String: [String: ParameterValue]] = [:], seeds: [String: Int] = [:]
        for node in graph.ordered {
            var values = node.parameters
            for spec in node.description.parameters {
                if case .seed = spec.kind, values[spec.name] == .text("random") {
                    let seed = Int.random(in: 0...Int(Int32.max))
                    values[spec.name] = .integer(seed)
                    seeds[node.name] = seed
                }
            }
            resolved[node.name] = values
        }
        self.resolved = resolved
        self.seeds = seeds
        self.compute = compute.fingerprint
        self.fingerprints = fingerprints
    }

    /// A node's parameters, seeds drawn; for a batch item, input paths with `{stem}` or `{index}`
    /// name the item's file (already absolute; validated to have no other placeholder).
    func parameters(of node: Graph.Node, item: BatchItem? = nil) -> [String: ParameterValue] {
        var values = resolved[node.name] ?? node.parameters
        guard let item else { return values }
        for spec in node.description.parameters {
            guard case .inputPath = spec.kind, case .text(let path)? = values[spec.name], PathTemplate.hasPlaceholders(path),
                  let filled = try? PathTemplate.fill(path, PathTemplate.itemValues(item)) else { continue }
            values[spec.name] = .text(filled)
        }
        return values
    }

    /// The part of a node's key that does not depend on its inputs; computed once per run (it
    /// fingerprints the files the node reads, and a batch asks for it once per item).
    mutating func baseKey(_ node: Graph.Node, parameters: [String: ParameterValue]) throws -> String {
        // A node that reads one file per item has one base key per file.
        let files = ExecutionPlan.readsFilePerItem(node)
            ? node.description.parameters.filter { if case .inputPath = $0.kind { return true }; return false }
                .map { parameters[$0.name]?.description ?? "" } : []
        let memo = ([node.name] + files).joined(separator: "\u{0}")
        if let known = baseKeys[memo] { return known }
        let key = try computeBaseKey(node, parameters: parameters)
        baseKeys[memo] = key
        return key
    }

    private func computeBaseKey(_ node: Graph.Node, parameters: [String: ParameterValue]) throws -> String {
        let d = node.description
        var lines = ["sdflow-node-v1", "type \(d.name)", "pack \(node.entry.pack.name) \(node.entry.pack.version)", "version \(d.version)"]
            + compute
        for spec in d.parameters where spec.affectsResult {
            guard let value = parameters[spec.name] else { continue }
            switch spec.kind {
            case .inputPath where value != .text(""):
                lines.append("parameter \(spec.name) file \(try Fingerprint.path(value.description, known: fingerprints))")
            default:
                lines.append("parameter \(spec.name) \(Self.canonical(value))")
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func canonical(_ value: ParameterValue) -> String {
        switch value {
        // As a number where a Double holds it exactly (keys stay those of earlier versions), else
        // exactly: seeds above 2^53 would otherwise share keys.
        case .integer(let i): return abs(i) <= 1 << 53 ? "number \(Double(i))" : "integer \(i)"
        case .number(let d): return "number \(d)"
        case .text(let s): return "text \(s.debugDescription)"
        case .boolean(let b): return "boolean \(b)"
        }
    }

    /// An execution's key: its base key and its inputs' keys.
    static func combine(_ base: String, _ inputKeys: [String: String]) -> String {
        Fingerprint.hash(base + "\n" + inputKeys.sorted { $0.key < $1.key }.map { "input \($0.key) \($0.value)" }.joined(separator: "\n"))
    }

    /// The key of one output port of an execution.
    static func output(_ key: String, _ port: String) -> String { Fingerprint.hash(key + "\n" + port) }
}

/// Content keys of list items, so each item of a batch is cached by what it is.
enum ContentKey {
    static func of(_ value: Value) -> String? {
        guard let (tensors, metadata) = ResultCache.encode(value) else { return nil }
        return Fingerprint.hash("item\n" + ResultCache.checksum(tensors) + "\n" + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
    }

    /// The stem of the file an image came from (set by image loaders in `Image.metadata["sdflow:source"]`).
    static func stem(_ value: Value) -> String? {
        let image: Image?
        switch value {
        case .image(let i), .mask(let i): image = i
        case .failed(_, let source?): return URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        default: image = nil
        }
        guard let source = image?.metadata[ImageMetadataKey.source] else { return nil }
        return URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
    }
}
