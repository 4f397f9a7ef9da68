import Foundation
import ImageIO
import NodeKit
import Yams

/// A workflow file as written, before it is checked against the node types.
///
///     version: 1
///     parameters:            # defaults; `--set name=value` overrides them
///       prompt: a red circle
///     nodes:
///       model:  {type: load_checkpoint, path: models/demo}
///       text:   {type: clip_encode, clip: !ref model.clip, text: !param prompt}
///
/// A node's fields are its type, its inputs (`!ref node.output`, or `!ref node` for a node
/// with one output) and its parameters (literals, or `!param name`). The tags make references
/// unambiguous: a plain string is always a literal.
public struct Workflow: Sendable {
    /// The version of the workflow format this file is written in.
    public static let formatVersion = 1

    public let path: String
    public let text: String
    public let summary: String?
    public let parameters: [Parameter]
    /// The nodes; for a workflow read from a PNG, a seed written as `random` in a node is the seed
    /// that run drew.
    public internal(set) var nodes: [Node]
    /// For a workflow loaded from a PNG sdflow wrote: the parameter values of that run that differ
    /// from the workflow's defaults (its `--set`s; a `random` seed as the seed drawn), so running it
    /// again gives the same image. Empty for a workflow file.
    public var recordedParameters: [String: String] = [:]
    /// The image this workflow was read from (absolute), or nil for a workflow file.
    public var sourceImage: String?
    /// Where the workflow's relative output paths start, when not at its own folder: a bundled
    /// workflow run by name (`sdflow run inpaint`) writes as if it were in `./workflows`, so
    /// `../out/x.png` is `./out/x.png` in the current folder, not inside the installation.
    public var outputFolder: String?

    /// A top-level parameter with its default.
    public struct Parameter: Sendable {
        public let name: String
        public let value: ParameterValue
        public let location: SourceLocation
    }

    /// One node of the graph.
    public struct Node: Sendable {
        public let name: String
        public let type: String
        public let location: SourceLocation
        public let typeLocation: SourceLocation
        /// Fields other than `type`, in file order.
        public let fields: [Field]
    }

    /// A node field: `name: value`.
    public struct Field: Sendable {
        public let name: String
        public let value: FieldValue
        public let location: SourceLocation
    }

    /// What a field holds.
    public enum FieldValue: Sendable {
        /// A literal scalar.
        case literal(ParameterValue)
        /// `!ref node.output` or `!ref node`.
        case reference(node: String, output: String?)
        /// `!param name`.
        case parameter(String)
    }

    // MARK: - Parsing

    /// Reads and parses a workflow file, or the workflow recorded in a PNG that sdflow wrote
    /// (it keeps the original file's path, so relative paths in it still work), or a ComfyUI API
    /// workflow (which may use the node types of `registry` by name).
    public static func load(path: String, registry: NodeRegistry? = nil) throws -> Workflow {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw WorkflowError(.missingFile, at: nil, "\(path): no such workflow file")
        }
        if ImageFile.format(of: data) != nil || ExifText.userComment(data) != nil {
            let image: Image
            do { image = try ImageFile.decode(data, name: path) } catch {
                // A WebP (which sdflow does not decode) may still carry A1111 parameters.
                if let imported = try importedA1111(ExifText.userComment(data), path: path) { return imported }
                throw WorkflowError(.syntax, at: nil, "\(error)")
            }
            guard let text = image.metadata[ImageMetadataKey.workflow] else {
                if let imported = try importedA1111(image.metadata["parameters"] ?? ExifText.userComment(data), path: path) { return imported }
                throw WorkflowError(.syntax, at: nil, "\(path): the image has no sdflow workflow or AUTOMATIC1111 parameters in its metadata")
            }
            var workflow: Workflow
            do {
                workflow = try parse(text, path: image.metadata[ImageMetadataKey.workflowPath].flatMap { $0.isEmpty ? nil : $0 } ?? path)
            } catch {
                // The text came from the image, so that is what the error names (not the recorded workflow file).
                throw WorkflowError(.syntax, at: nil, "\(path): its \(ImageMetadataKey.workflow) chunk is not a valid workflow: \(error)")
            }
            // Values equal to the workflow's defaults are left out: a relative path among them is relative to
            // the workflow's folder, not to the folder sdflow runs in, and stays so only as a default.
            let defaults = Dictionary(workflow.parameters.map { ($0.name, $0.value.description) }, uniquingKeysWith: { a, _ in a })
            let recorded = try RecordedRun(json: image.metadata[ImageMetadataKey.parameters], image: path)
            workflow.recordedParameters = recorded.parameters(replayingSeedsOf: workflow.nodes).filter { defaults[$0.key] != $0.value }
            workflow.nodes = workflow.nodes.map(recorded.replayingSeeds)
            workflow.sourceImage = URL(fileURLWithPath: path).standardizedFileURL.path
            return workflow
        }
        if ComfyImport.recognises(data) { return try importedComfy(data, path: path, registry: registry) }
        guard let text = String(data: data, encoding: .utf8) else {
            throw WorkflowError(.syntax, at: SourceLocation(file: path, line: 1, column: 1), "the file is not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    /// The workflow `sdflow import` makes of a ComfyUI API workflow (its notes go to standard error).
    static func importedComfy(_ data: Data, path: String, registry: NodeRegistry?) throws -> Workflow {
        let imported: ComfyImport
        do { imported = try ComfyImport(json: data, source: URL(fileURLWithPath: path).lastPathComponent, registry: registry) } catch {
            throw WorkflowError(.syntax, at: nil, "\(path): \(error)")
        }
        FileHandle.standardError.write(Data(imported.notes.map { "note: \($0)\n" }.joined().utf8))
        do { return try parse(imported.yaml, path: path) } catch {
            throw WorkflowError(.syntax, at: nil, "\(path): the workflow made of this ComfyUI workflow is invalid: \(error)")
        }
    }

    /// The workflow `sdflow import` makes of an image's AUTOMATIC1111 parameters (its notes go to
    /// standard error), or nil when `text` is not such parameters.
    static func importedA1111(_ text: String?, path: String) throws -> Workflow? {
        guard let text, let parameters = A1111Parameters(text: text) else { return nil }
        let imported = A1111Import(parameters, source: URL(fileURLWithPath: path).lastPathComponent)
        FileHandle.standardError.write(Data(imported.notes.map { "note: \($0)\n" }.joined().utf8))
        do {
            var workflow = try parse(imported.yaml, path: path)
            workflow.sourceImage = URL(fileURLWithPath: path).standardizedFileURL.path
            return workflow
        } catch {
            throw WorkflowError(.syntax, at: nil, "\(path): the workflow made of its AUTOMATIC1111 parameters is invalid: \(error)")
        }
    }

    /// Parses workflow text; `path` names it in errors.
    public static func parse(_ text: String, path: String) throws -> Workflow {
        let root: Yams.Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw WorkflowError(.syntax, at: SourceLocation(file: path, line: 1, column: 1), "the workflow is empty",
                                    hint: "start with `version: 1` and a `nodes:` section")
            }
            root = node
        } catch let error as YamlError {
            throw syntaxError(error, path: path)
        }
        let reader = Reader(path: path)
        let top = try reader.mapping(root, what: "the workflow")
        var version: Int?
        var summary: String?
        var parameters: [Parameter] = []
        var nodes: [Node] = []
        for (key, value) in top {
            switch key.name {
            case "version":
                guard case .integer(let v) = try reader.literal(value) else {
                    throw WorkflowError(.syntax, at: reader.location(value), "version must be an integer")
                }
                guard v == formatVersion else {
                    throw WorkflowError(.syntax, at: reader.location(value), "workflow format version \(v) is not supported",
                                        hint: "this sdflow reads version \(formatVersion)")
                }
                version = v
            case "description":
                summary = try reader.literal(value).description
            case "parameters":
                for (name, defaultValue) in try reader.mapping(value, what: "parameters") {
                    parameters.append(Parameter(name: name.name, value: try reader.literal(defaultValue), location: name.location))
                }
            case "nodes":
                for (name, body) in try reader.mapping(value, what: "nodes") {
                    nodes.append(try reader.node(name: name, body: body))
                }
            default:
                throw WorkflowError(.syntax, at: key.location, "unknown top-level key '\(key.name)'",
                                    hint: closest(key.name, in: ["version", "description", "parameters", "nodes"]).map { "did you mean '\($0)'?" }
                                        ?? "a workflow has version, description, parameters and nodes")
            }
        }
        guard version != nil else {
            throw WorkflowError(.syntax, at: reader.location(root), "the workflow has no `version:`", hint: "add `version: \(formatVersion)` at the top")
        }
        guard !nodes.isEmpty else {
            throw WorkflowError(.syntax, at: reader.location(root), "the workflow has no nodes", hint: "add a `nodes:` section")
        }
        return Workflow(path: path, text: text, summary: summary, parameters: parameters, nodes: nodes)
    }

    private static func syntaxError(_ error: YamlError, path: String) -> WorkflowError {
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _):
            let message = [context?.text, problem].compactMap { $0 }.joined(separator: ": ")
            return WorkflowError(.syntax, at: SourceLocation(file: path, line: mark.line, column: mark.column), "YAML: \(message)")
        case let .composer(context, problem, mark, _):
            let message = [context?.text, problem].compactMap { $0 }.joined(separator: ": ")
            return WorkflowError(.syntax, at: SourceLocation(file: path, line: mark.line, column: mark.column), "YAML: \(message)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return WorkflowError(.syntax, at: SourceLocation(file: path, line: context.mark.line, column: context.mark.column),
                                 "'\(duplicates.joined(separator: "', '"))' appears more than once in the same mapping",
                                 hint: "node names and keys must be unique")
        default:
            return WorkflowError(.syntax, at: SourceLocation(file: path, line: 1, column: 1), "YAML: \(error)")
        }
    }
}

/// Walks the composed YAML tree, turning it into workflow parts with locations.
private struct Reader {
    let path: String

    struct Key {
        let name: String
        let location: SourceLocation
    }

    func location(_ node: Yams.Node) -> SourceLocation {
        SourceLocation(file: path, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    /// A mapping's entries in order; keys must be plain strings.
    func mapping(_ node: Yams.Node, what: String) throws -> [(Key, Yams.Node)] {
        guard case .mapping(let mapping) = node else {
            throw WorkflowError(.syntax, at: location(node), "\(what) must be a mapping of `name: value` entries")
        }
        // (Yams itself rejects duplicate keys.)
        return try mapping.map { keyNode, value in
            guard case .scalar(let scalar) = keyNode else {
                throw WorkflowError(.syntax, at: location(keyNode), "keys in \(what) must be plain names")
            }
            return (Key(name: scalar.string, location: location(keyNode)), value)
        }
    }

    /// A literal scalar: integer, number, boolean or text (by YAML's core schema; quote to force text).
    func literal(_ node: Yams.Node) throws -> ParameterValue {
        guard case .scalar(let scalar) = node else {
            throw WorkflowError(.syntax, at: location(node), "expected a single value here, not a list or mapping")
        }
        switch Tag.Name(rawValue: node.tag.rawValue) {
        case .int:
            guard let i = node.int else { throw WorkflowError(.syntax, at: location(node), "'\(scalar.string)' is not a valid integer") }
            return .integer(i)
        case .float:
            guard let d = node.float else { throw WorkflowError(.syntax, at: location(node), "'\(scalar.string)' is not a valid number") }
            return .number(d)
        case .bool:
            return .boolean(node.bool ?? false)
        case .null:
            throw WorkflowError(.missingValue, at: location(node), "a value is missing here", hint: "write \"\" for empty text")
        default:
            return .text(scalar.string)
        }
    }

    func node(name: Key, body: Yams.Node) throws -> Workflow.Node {
        guard name.name.range(of: "^[A-Za-z_][A-Za-z0-9_-]*$", options: .regularExpression) != nil else {
            throw WorkflowError(.syntax, at: name.location, "node name '\(name.name)' must start with a letter and hold only letters, digits, _ and -")
        }
        var type: (String, SourceLocation)?
        var fields: [Workflow.Field] = []
        for (key, value) in try mapping(body, what: "node '\(name.name)'") {
            if key.name == "type" {
                guard case .text(let t) = try literal(value) else {
                    throw WorkflowError(.syntax, at: location(value), "the type of node '\(name.name)' must be a node type name")
                }
                type = (t, location(value))
                continue
            }
            fields.append(Workflow.Field(name: key.name, value: try field(value), location: location(value)))
        }
        guard let (typeName, typeLocation) = type else {
            throw WorkflowError(.syntax, at: name.location, "node '\(name.name)' has no `type:`", hint: "`sdflow nodes` lists the node types")
        }
        return Workflow.Node(name: name.name, type: typeName, location: name.location, typeLocation: typeLocation, fields: fields)
    }

    func field(_ node: Yams.Node) throws -> Workflow.FieldValue {
        switch node.tag.rawValue {
        case "!ref":
            guard case .scalar(let scalar) = node else {
                throw WorkflowError(.syntax, at: location(node), "!ref needs a node name, like `!ref model.clip`")
            }
            let parts = scalar.string.trimmingCharacters(in: .whitespaces).split(separator: ".", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
                throw WorkflowError(.syntax, at: location(node), "'\(scalar.string)' is not a reference", hint: "write `!ref node` or `!ref node.output`")
            }
            return .reference(node: String(parts[0]), output: parts.count == 2 ? String(parts[1]) : nil)
        case "!param":
            guard case .scalar(let scalar) = node, !scalar.string.isEmpty else {
                throw WorkflowError(.syntax, at: location(node), "!param needs a parameter name, like `!param prompt`")
            }
            return .parameter(scalar.string.trimmingCharacters(in: .whitespaces))
        default:
            if case .scalar = node, node.tag.rawValue.hasPrefix("!"), !node.tag.rawValue.hasPrefix("!!") {
                throw WorkflowError(.syntax, at: location(node), "unknown tag '\(node.tag.rawValue)'", hint: "use !ref or !param")
            }
            return .literal(try literal(node))
        }
    }
}

/// What save_image recorded of a run (its `sdflow:parameters` JSON): the workflow's parameters
/// after `--set`, and every upstream node's resolved values, seeds as the numbers drawn.
private struct RecordedRun {
    var parameters: [String: String] = [:]
    /// Node name -> field name -> value.
    var nodeValues: [String: [String: String]] = [:]

    /// The parameters recorded in the `sdflow:parameters` chunk of `image`. A missing or damaged
    /// chunk is an error: running the workflow with its defaults would quietly make another image.
    init(json: String?, image: String) throws {
        let chunk = ImageMetadataKey.parameters
        guard let json else {
            throw WorkflowError(.syntax, at: nil, "\(image): it has a workflow but no \(chunk) chunk, so its run cannot be repeated",
                                hint: "run the workflow file itself with --set for its parameters")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any],
              let parameters = object["parameters"] as? [String: String], let nodes = object["nodes"] as? [String: Any] else {
            throw WorkflowError(.syntax, at: nil, "\(image): its \(chunk) chunk is not what sdflow writes "
                                + "(JSON with \"parameters\" as text values and \"nodes\"): \(json.prefix(80))")
        }
        self.parameters = parameters
        for (name, node) in nodes {
            nodeValues[name] = (node as? [String: Any])?["parameters"] as? [String: String]
        }
    }

    /// The recorded parameters; one recorded as `random` (a seed) becomes the seed that was drawn:
    /// the value recorded for the node fields it feeds, when they all agree.
    func parameters(replayingSeedsOf nodes: [Workflow.Node]) -> [String: String] {
        var result = parameters
        for (name, value) in parameters where value == "random" {
            let drawn = Set(nodes.flatMap { node in
                node.fields.compactMap { field -> String? in
                    guard case .parameter(name) = field.value else { return nil }
                    return nodeValues[node.name]?[field.name]
                }
            })
            if drawn.count == 1, let seed = drawn.first, Int(seed) != nil { result[name] = seed }
        }
        return result
    }

    /// `node` with each field written as `random` (a seed in the node itself) set to the recorded seed.
    func replayingSeeds(_ node: Workflow.Node) -> Workflow.Node {
        let fields = node.fields.map { field -> Workflow.Field in
            guard case .literal(.text("random")) = field.value, let seed = nodeValues[node.name]?[field.name].flatMap(Int.init) else { return field }
            return Workflow.Field(name: field.name, value: .literal(.integer(seed)), location: field.location)
        }
        return Workflow.Node(name: node.name, type: node.type, location: node.location, typeLocation: node.typeLocation, fields: fields)
    }
}
