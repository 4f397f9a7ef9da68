import Foundation
import NodeKit

/// A workflow checked against the node types: every reference resolved and typed, every
/// parameter resolved to a value in range, paths made absolute, no cycles, and the nodes
/// the outputs need in an order that runs each after its inputs.
public struct Graph {
    /// One checked node.
    public struct Node {
        public let name: String
        public let entry: NodeRegistry.Entry
        public let location: SourceLocation
        /// Every parameter's value, defaults included.
        public let parameters: [String: ParameterValue]
        /// Connected inputs by port name.
        public let inputs: [String: Edge]
        public var description: NodeDescription { entry.description }
    }

    /// A connection from another node's output.
    public struct Edge: Equatable {
        public let node: String
        public let output: String
        public let type: ValueType
    }

    public let workflow: Workflow
    public let nodes: [String: Node]
    /// The nodes the outputs need, inputs before the nodes that use them.
    public let order: [String]
    /// The same nodes, checked.
    public let ordered: [Node]
    /// The output (sink) nodes.
    public let outputs: [String]
    /// The top-level parameters after overrides, as text (recorded in outputs' metadata); paths
    /// given with --set are absolute.
    public let parameterValues: [String: String]
    /// Workflow nodes no output needs (they are not run).
    public let unused: [String]

    /// Checks `workflow`; `overrides` are `--set name=value` pairs, whose relative paths are
    /// taken from `currentDirectory`. Paths in the file are relative to the file's folder.
    /// Throws `WorkflowErrors` with everything wrong at once.
    /// `nodeDefaults` give node parameters of those names that a node leaves unset a value from the
    /// command line (`--embeddings DIR` sets every clip_encode's `embeddings`).
    ///
    /// The passes, each in its own function: the top-level parameters and overrides; each node's
    /// type, fields and parameter values; the references between nodes and their types; then (with
    /// no error so far) cycles, the outputs and the order of what they need.
    public init(workflow: Workflow, registry: NodeRegistry, overrides: [String: String] = [:],
                nodeDefaults: [String: String] = [:],
                currentDirectory: String = FileManager.default.currentDirectoryPath) throws {
        self.workflow = workflow
        var checker = Checker(workflow: workflow, registry: registry, nodeDefaults: nodeDefaults, currentDirectory: currentDirectory)
        checker.resolveParameters(overrides)
        var checked: [String: Node] = [:]
        for node in workflow.nodes { checked[node.name] = checker.check(node) }
        parameterValues = checker.recordedValues
        checked = checker.connect(checked)
        guard checker.errors.isEmpty else { throw WorkflowErrors(errors: checker.errors) }

        if let cycle = Graph.findCycle(checked, order: workflow.nodes.map(\.name)) {
            let start = checked[cycle[0]]?.location ?? SourceLocation(file: workflow.path, line: 1, column: 1)
            throw WorkflowErrors(errors: [WorkflowError(.cycle, at: start,
                                                        "the nodes form a cycle: " + cycle.joined(separator: " -> "),
                                                        hint: "a node cannot depend on its own output")])
        }
        let sinks = workflow.nodes.compactMap { checked[$0.name] }.filter(\.description.isOutput).map(\.name)
        guard !sinks.isEmpty else {
            throw WorkflowErrors(errors: [WorkflowError(.noOutputs, at: SourceLocation(file: workflow.path, line: 1, column: 1),
                                                        "the workflow has no output node, so there is nothing to run",
                                                        hint: "add a save_image (or other save_) node")])
        }
        let runOrder = Graph.runOrder(sinks, checked), needed = Set(runOrder)
        nodes = checked
        order = runOrder
        ordered = runOrder.compactMap { checked[$0] }
        outputs = sinks
        unused = workflow.nodes.map(\.name).filter { !needed.contains($0) }
    }

    /// The node an edge comes from. Every edge of a checked graph names one of its nodes (`init`
    /// resolves each reference or throws), so this never fails.
    public func node(feeding edge: Edge) -> Node {
        guard let node = nodes[edge.node] else { preconditionFailure("checked graph without node '\(edge.node)'") }
        return node
    }

    /// The nodes `sinks` need, each after its inputs (depth first, inputs by name).
    static func runOrder(_ sinks: [String], _ nodes: [String: Node]) -> [String] {
        var order: [String] = []
        var visited = Set<String>()
        func visit(_ name: String) {
            guard visited.insert(name).inserted else { return }
            for edge in (nodes[name]?.inputs.values ?? [:].values).sorted(by: { $0.node < $1.node }) { visit(edge.node) }
            order.append(name)
        }
        for sink in sinks { visit(sink) }
        return order
    }

    /// The state of checking one workflow: what the passes share, and the errors found so far.
    struct Checker {
        let workflow: Workflow
        let registry: NodeRegistry
        let nodeDefaults: [String: String]
        let currentDirectory: String
        let workflowFolder: String
        let outputFolder: String
        var errors: [WorkflowError] = []
        /// Top-level parameters after overrides.
        var parameters: [String: (value: ParameterValue, fromCommandLine: Bool, location: SourceLocation)] = [:]
        /// As recorded in outputs' metadata; a relative path given with --set is recorded absolute,
        /// so a rerun from another folder finds the same file.
        var recordedValues: [String: String] = [:]
        /// `!ref` fields, resolved by `connect`.
        var references: [(node: String, port: String, target: String, output: String?, location: SourceLocation)] = []

        init(workflow: Workflow, registry: NodeRegistry, nodeDefaults: [String: String], currentDirectory: String) {
            self.workflow = workflow
            self.registry = registry
            self.nodeDefaults = nodeDefaults
            self.currentDirectory = currentDirectory
            workflowFolder = URL(fileURLWithPath: workflow.path).deletingLastPathComponent().path
            outputFolder = workflow.outputFolder ?? workflowFolder
        }

        /// The top-level parameters, then the overrides (typed like their defaults).
        mutating func resolveParameters(_ overrides: [String: String]) {
            for p in workflow.parameters { parameters[p.name] = (p.value, false, p.location) }
            for (name, raw) in overrides.sorted(by: { $0.key < $1.key }) {
                guard let existing = parameters[name] else {
                    errors.append(WorkflowError(.badOverride, at: nil, "--set \(name): the workflow has no parameter '\(name)'",
                                                hint: closest(name, in: Array(parameters.keys)).map { "did you mean '\($0)'?" }
                                                    ?? "its parameters are: " + parameters.keys.sorted().joined(separator: ", ")))
                    continue
                }
                guard let value = Graph.parse(raw, like: existing.value) else {
                    errors.append(WorkflowError(.badOverride, at: nil, "--set \(name)=\(raw): expected \(Graph.kindName(existing.value))"))
                    continue
                }
                parameters[name] = (value, true, existing.location)
            }
            recordedValues = parameters.mapValues { $0.value.description }
        }

        /// One node: its type, its fields (inputs are noted for `connect`), and every parameter's
        /// value (given, from the command line's node defaults, or the default); nil when the type is unknown.
        mutating func check(_ node: Workflow.Node) -> Node? {
            guard let entry = registry.entry(node.type) else {
                errors.append(WorkflowError(.unknownNodeType, at: node.typeLocation, "unknown node type '\(node.type)' (node '\(node.name)')",
                                            hint: closest(node.type, in: registry.names).map { "did you mean '\($0)'?" } ?? "`sdflow nodes` lists the node types"))
                return nil
            }
            let d = entry.description
            var values: [String: ParameterValue] = [:]
            for field in node.fields {
                if d.input(field.name) != nil {
                    guard case .reference(let target, let output) = field.value else {
                        errors.append(WorkflowError(.wrongType, at: field.location, "input '\(field.name)' of '\(node.name)' takes the output of another node",
                                                    hint: "write `\(field.name): !ref NODE.OUTPUT`"))
                        continue
                    }
                    references.append((node.name, field.name, target, output, field.location))
                } else if let spec = d.parameter(field.name) {
                    if let value = parameterValue(field, spec, node: node.name) { values[field.name] = value }
                } else {
                    let names = d.inputs.map(\.name) + d.parameters.map(\.name)
                    errors.append(WorkflowError(.unknownParameter, at: field.location, "node type '\(d.name)' has no input or parameter '\(field.name)'",
                                                hint: closest(field.name, in: names).map { "did you mean '\($0)'?" }
                                                    ?? "`sdflow nodes \(d.name)` shows its inputs and parameters"))
                }
            }
            for spec in d.parameters where values[spec.name] == nil {
                if let raw = nodeDefaults[spec.name], !node.fields.contains(where: { $0.name == spec.name }),
                   let value = Graph.parse(raw, like: spec.defaultValue ?? .text(raw)) {
                    if let v = Graph.check(value, spec, node: node.name, at: node.location, base: currentDirectory,
                                           outputBase: currentDirectory, errors: &errors) { values[spec.name] = v }
                } else if let value = spec.defaultValue {
                    values[spec.name] = value
                } else if !node.fields.contains(where: { $0.name == spec.name }) {
                    errors.append(WorkflowError(.missingValue, at: node.location, "node '\(node.name)' (\(d.name)) needs parameter '\(spec.name)'",
                                                hint: "\(spec.name): \(spec.kind)"))
                }
            }
            return Node(name: node.name, entry: entry, location: node.location, parameters: values, inputs: [:])
        }

        /// A parameter field's value: a literal, or a top-level parameter (paths from the command
        /// line resolved against the current folder and recorded absolute).
        mutating func parameterValue(_ field: Workflow.Field, _ spec: NodeDescription.Parameter, node: String) -> ParameterValue? {
            switch field.value {
            case .reference:
                errors.append(WorkflowError(.wrongType, at: field.location, "'\(field.name)' of '\(node)' is a parameter, not an input",
                                            hint: "give a value, or `!param NAME` for a workflow parameter"))
                return nil
            case .literal(let value):
                return Graph.check(value, spec, node: node, at: field.location, base: workflowFolder, outputBase: outputFolder, errors: &errors)
            case .parameter(let name):
                guard let p = parameters[name] else {
                    errors.append(WorkflowError(.missingValue, at: field.location, "the workflow has no parameter '\(name)'",
                                                hint: closest(name, in: Array(parameters.keys)).map { "did you mean '\($0)'?" }
                                                    ?? "declare it under `parameters:`"))
                    return nil
                }
                guard let v = Graph.check(p.value, spec, node: node, at: field.location, base: p.fromCommandLine ? currentDirectory : workflowFolder,
                                          outputBase: p.fromCommandLine ? currentDirectory : outputFolder, errors: &errors) else { return nil }
                switch spec.kind {
                case .inputPath, .outputPath: if p.fromCommandLine { recordedValues[name] = v.description }
                default: break
                }
                return v
            }
        }

        /// The nodes with their inputs connected: each reference's target, output and type checked,
        /// and every required input connected.
        mutating func connect(_ checked: [String: Node]) -> [String: Node] {
            let declared = Set(workflow.nodes.map(\.name))
            var inputs: [String: [String: Edge]] = [:]
            for ref in references {
                guard declared.contains(ref.target) else {
                    errors.append(WorkflowError(.missingNode, at: ref.location, "no node named '\(ref.target)'",
                                                hint: closest(ref.target, in: Array(declared)).map { "did you mean '\($0)'?" }))
                    continue
                }
                guard let source = checked[ref.target], let consumer = checked[ref.node] else { continue }  // already reported
                guard let edge = edge(from: source, to: consumer, ref) else { continue }
                inputs[ref.node, default: [:]][ref.port] = edge
            }
            var connected: [String: Node] = [:]
            for (name, node) in checked {
                for port in node.description.inputs where !port.optional && inputs[name]?[port.name] == nil
                    && !references.contains(where: { $0.node == name && $0.port == port.name }) {
                    errors.append(WorkflowError(.missingValue, at: node.location, "input '\(port.name)' of '\(name)' (\(node.description.name)) is not connected",
                                                hint: "\(port.name): !ref NODE.OUTPUT (\(port.type))"))
                }
                connected[name] = Node(name: node.name, entry: node.entry, location: node.location, parameters: node.parameters, inputs: inputs[name] ?? [:])
            }
            return connected
        }

        /// The edge of one reference: its output named or the only one, of a type the port accepts.
        mutating func edge(from source: Node, to consumer: Node,
                           _ ref: (node: String, port: String, target: String, output: String?, location: SourceLocation)) -> Edge? {
            let outputs = source.description.outputs
            let output: NodeDescription.Port
            if let name = ref.output {
                guard let port = source.description.output(name) else {
                    errors.append(WorkflowError(.unknownPort, at: ref.location, "node '\(source.name)' (\(source.description.name)) has no output '\(name)'",
                                                hint: "its outputs are: " + outputs.map(\.name).joined(separator: ", ")))
                    return nil
                }
                output = port
            } else {
                guard outputs.count == 1 else {
                    errors.append(WorkflowError(.unknownPort, at: ref.location, "node '\(source.name)' has several outputs; say which",
                                                hint: outputs.map { "!ref \(source.name).\($0.name)" }.joined(separator: " or ")))
                    return nil
                }
                output = outputs[0]
            }
            guard let port = consumer.description.input(ref.port) else { return nil }  // references are collected from declared ports
            guard Graph.accepts(port.type, output.type) else {
                errors.append(WorkflowError(.wrongType, at: ref.location,
                                            "input '\(ref.port)' of '\(ref.node)' takes \(port.type), but '\(source.name).\(output.name)' is \(output.type)",
                                            hint: Graph.conversionHint(from: output.type, to: port.type)))
                return nil
            }
            return Edge(node: source.name, output: output.name, type: output.type)
        }
    }

    // MARK: - Types

    /// Whether a port of type `port` accepts a value of type `value`: the same type, or a list
    /// of it (the node then runs once per item). Latents and conditioning are tensors, so a
    /// plain tensor (e.g. from load_tensor) connects to them and they connect to tensor ports.
    static func accepts(_ port: ValueType, _ value: ValueType) -> Bool {
        func compatible(_ p: ValueType, _ v: ValueType) -> Bool {
            if p == v { return true }
            let tensors: Set<ValueType> = [.tensor, .latent, .conditioning]
            return tensors.contains(p) && tensors.contains(v) && (p == .tensor || v == .tensor)
        }
        return compatible(port, value) || value == .list(port) || { if case .list(let e) = value { return compatible(port, e) }; return false }()
    }

    static func conversionHint(from: ValueType, to: ValueType) -> String? {
        switch (from.element, to) {
        case (.image, .latent): return "vae_encode turns an image into a latent"
        case (.latent, .image): return "vae_decode turns a latent into an image"
        case (.image, .mask): return "image_to_mask makes a mask from an image"
        case (.mask, .image): return "mask_to_image makes an image from a mask"
        case (.text, .conditioning): return "clip_encode turns text into conditioning"
        default: return nil
        }
    }

    // MARK: - Parameters

    /// A literal parsed like another value of the same kind (for `--set`).
    static func parse(_ raw: String, like example: ParameterValue) -> ParameterValue? {
        switch example {
        // A default written `1` may stand for a number: 0.5 is accepted here, and the nodes that
        // take the parameter say whether they need an integer.
        case .integer: return Int(raw).map(ParameterValue.integer) ?? Double(raw).map(ParameterValue.number) ?? (raw == "random" ? .text(raw) : nil)
        case .number: return Double(raw).map(ParameterValue.number)
        case .boolean:
            switch raw.lowercased() {
            case "true", "yes", "on", "1": return .boolean(true)
            case "false", "no", "off", "0": return .boolean(false)
            default: return nil
            }
        case .text: return .text(raw)
        }
    }

    static func kindName(_ value: ParameterValue) -> String {
        switch value {
        case .integer: return "an integer"
        case .number: return "a number"
        case .boolean: return "true or false"
        case .text: return "text"
        }
    }

    /// Checks a value against a parameter's kind, converting where that is lossless, and resolves
    /// paths: input paths against `base`, output paths against `outputBase`.
    static func check(_ value: ParameterValue, _ spec: NodeDescription.Parameter, node: String, at location: SourceLocation,
                      base: String, outputBase: String, errors: inout [WorkflowError]) -> ParameterValue? {
        func fail(_ kind: WorkflowError.Kind, _ message: String, hint: String? = nil) -> ParameterValue? {
            errors.append(WorkflowError(kind, at: location, "'\(spec.name)' of '\(node)': \(message)", hint: hint))
            return nil
        }
        switch spec.kind {
        case .integer(let range):
            guard let i = value.intValue else { return fail(.wrongType, "expected an integer, got '\(value)'") }
            if let range, !range.contains(i) { return fail(.valueOutOfRange, "\(i) is out of range", hint: "allowed: \(range.lowerBound)...\(range.upperBound)") }
            return .integer(i)
        case .number(let range):
            guard let d = value.doubleValue else { return fail(.wrongType, "expected a number, got '\(value)'") }
            if let range, !range.contains(d) {
                return fail(.valueOutOfRange, "\(d) is out of range", hint: "allowed: \(range.lowerBound)...\(range.upperBound)")
            }
            return .number(d)
        case .boolean:
            guard let b = value.boolValue else { return fail(.wrongType, "expected true or false, got '\(value)'") }
            return .boolean(b)
        case .text:
            return .text(value.description)
        case .choice(let options):
            var word = value.description
            // YAML reads a bare on/off (yes/no) as true/false: take it back as the word the choice has.
            if case .boolean(let flag) = value, !options.contains(word),
               let spelled = (flag ? ["on", "yes"] : ["off", "no"]).first(where: options.contains) {
                word = spelled
            }
            guard options.contains(word) else {
                return fail(.valueOutOfRange, "'\(word)' is not one of \(options.joined(separator: ", "))",
                            hint: closest(word, in: options).map { "did you mean '\($0)'?" })
            }
            return .text(word)
        case .seed:
            if case .text(let s) = value, s == "random" { return value }
            guard let i = value.intValue, i >= 0 else { return fail(.wrongType, "a seed is an integer >= 0 or \"random\", got '\(value)'") }
            return .integer(i)
        case .inputPath(let kind):
            // An empty default means the path is optional.
            if value == .text(""), spec.defaultValue == .text("") { return value }
            guard case .text(let raw) = value, !raw.isEmpty else { return fail(.wrongType, "expected a path, got '\(value)'") }
            if PathTemplate.hasPlaceholders(raw) {
                // One file per batch item (`latents/{stem}.safetensors`): each is checked when its item runs.
                do { _ = try PathTemplate.fill(raw, Dictionary(uniqueKeysWithValues: PathTemplate.itemFields.map { ($0, "0") })) } catch { return fail(.wrongType, "\(error)") }
                return .text(resolve(raw, base: base))
            }
            let path = resolve(raw, base: base)
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                return fail(.missingFile, "no such file or folder: \(path)")
            }
            if kind == .file && isFolder.boolValue { return fail(.wrongType, "\(path) is a folder, expected a file") }
            if kind == .folder && !isFolder.boolValue { return fail(.wrongType, "\(path) is a file, expected a folder") }
            return .text(path)
        case .outputPath:
            guard case .text(let raw) = value, !raw.isEmpty else { return fail(.wrongType, "expected a path, got '\(value)'") }
            return .text(resolve(raw, base: outputBase))
        }
    }

    /// `raw` made absolute against `base` (with `~` expanded).
    public static func resolve(_ raw: String, base: String) -> String {
        let expanded = (raw as NSString).expandingTildeInPath
        if expanded.hasPrefix("/") { return URL(fileURLWithPath: expanded).standardizedFileURL.path }
        return URL(fileURLWithPath: base).appendingPathComponent(expanded).standardizedFileURL.path
    }

    // MARK: - Cycles

    /// A cycle as a list of node names (first repeated at the end), or nil.
    static func findCycle(_ nodes: [String: Node], order: [String]) -> [String]? {
        var state: [String: Int] = [:]  // 1 = on the stack, 2 = done
        var stack: [String] = []
        func visit(_ name: String) -> [String]? {
            if state[name] == 2 { return nil }
            if state[name] == 1 {
                return Array(stack.drop { $0 != name }) + [name]
            }
            state[name] = 1
            stack.append(name)
            for edge in (nodes[name]?.inputs.values.map(\.node) ?? []).sorted() {
                if let cycle = visit(edge) { return cycle }
            }
            stack.removeLast()
            state[name] = 2
            return nil
        }
        for name in order { if let cycle = visit(name) { return cycle } }
        return nil
    }
}
