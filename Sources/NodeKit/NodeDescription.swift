/// What a node is: its type name, ports, parameters and implementation version.
/// `sdflow nodes NAME` prints it; the engine validates workflows against it.
public struct NodeDescription: Sendable {
    /// The type name used in workflows (`load_image`).
    public let name: String
    /// One line on what the node does.
    public let summary: String
    /// Bumped whenever the node's results change, so cached results of older versions are not reused.
    public let version: Int
    public let inputs: [Port]
    public let outputs: [Port]
    public let parameters: [Parameter]
    /// Output nodes (sinks) are what a workflow runs for: only the nodes they need are executed.
    public let isOutput: Bool
    /// Run on every execution, never served from the cache (e.g. writing files).
    public let alwaysRuns: Bool

    /// A description whose parameters are declared as `Param`s (or plain `Parameter`s).
    public init(name: String, summary: String, version: Int = 1, inputs: [Port] = [], outputs: [Port] = [],
                parameters: [any ParameterDeclaration], isOutput: Bool = false, alwaysRuns: Bool = false) {
        self.init(name: name, summary: summary, version: version, inputs: inputs, outputs: outputs, parameters: parameters.map(\.spec),
                  isOutput: isOutput, alwaysRuns: alwaysRuns)
    }

    public init(name: String, summary: String, version: Int = 1, inputs: [Port] = [], outputs: [Port] = [],
                parameters: [Parameter] = [], isOutput: Bool = false, alwaysRuns: Bool = false) {
        self.name = name
        self.summary = summary
        self.version = version
        self.inputs = inputs
        self.outputs = outputs
        self.parameters = parameters
        self.isOutput = isOutput
        self.alwaysRuns = alwaysRuns
    }

    public func input(_ name: String) -> Port? { inputs.first { $0.name == name } }
    public func output(_ name: String) -> Port? { outputs.first { $0.name == name } }
    public func parameter(_ name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// A typed input or output of a node.
    public struct Port: Sendable {
        public let name: String
        public let type: ValueType
        public let optional: Bool
        public let help: String

        public init(_ name: String, _ type: ValueType, optional: Bool = false, help: String) {
            self.name = name
            self.type = type
            self.optional = optional
            self.help = help
        }
    }

    /// A literal setting of a node, with its kind, default and allowed values.
    public struct Parameter: Sendable {
        public let name: String
        public let kind: ParameterKind
        /// nil when the parameter is required.
        public let defaultValue: ParameterValue?
        public let help: String
        /// Whether the value can change the node's result, and so is part of its cache key (false
        /// for settings such as live previews).
        public let affectsResult: Bool

        public init(_ name: String, _ kind: ParameterKind, default defaultValue: ParameterValue? = nil, help: String,
                    affectsResult: Bool = true) {
            self.name = name
            self.kind = kind
            self.defaultValue = defaultValue
            self.help = help
            self.affectsResult = affectsResult
        }
    }
}

/// The kinds of node parameters.
public enum ParameterKind: Sendable, CustomStringConvertible {
    case integer(ClosedRange<Int>?)
    case number(ClosedRange<Double>?)
    case text
    case boolean
    /// One of a fixed set of words.
    case choice([String])
    /// A seed: an integer in 0...2^64-1, or "random" (resolved to a number before anything runs).
    case seed
    /// A file or folder read by the node; checked to exist before running, and fingerprinted for caching.
    case inputPath(PathKind)
    /// A file written by the node (may contain `{...}` placeholders).
    case outputPath

    /// What an input path must be.
    public enum PathKind: Sendable { case file, folder, fileOrFolder }

    public var description: String {
        switch self {
        case .integer(let r): return r.map { "integer \($0.lowerBound)...\($0.upperBound)" } ?? "integer"
        case .number(let r): return r.map { "number \(format($0.lowerBound))...\(format($0.upperBound))" } ?? "number"
        case .text: return "text"
        case .boolean: return "true or false"
        case .choice(let options): return "one of " + options.joined(separator: ", ")
        case .seed: return "seed (integer or \"random\")"
        case .inputPath(.file): return "path of an existing file"
        case .inputPath(.folder): return "path of an existing folder"
        case .inputPath(.fileOrFolder): return "path of an existing file or folder"
        case .outputPath: return "output path"
        }
    }

    private func format(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)
    }
}

/// A resolved parameter value.
public enum ParameterValue: Sendable, Equatable, Hashable, CustomStringConvertible {
    case integer(Int)
    case number(Double)
    case text(String)
    case boolean(Bool)

    public var description: String {
        switch self {
        case .integer(let i): return String(i)
        case .number(let d): return String(d)
        case .text(let s): return s
        case .boolean(let b): return String(b)
        }
    }

    public var intValue: Int? {
        switch self {
        case .integer(let i): return i
        case .number(let d) where d == d.rounded() && abs(d) < 9e18: return Int(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .integer(let i): return Double(i)
        case .number(let d): return d
        default: return nil
        }
    }

    public var stringValue: String? { if case .text(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .boolean(let b) = self { return b }; return nil }
}

/// Parameter values in the text form the plugin ABI uses.
public enum ParameterText {
    /// A value of `kind` from text ("12", "0.5", "true", a choice).
    public static func parse(_ text: String, kind: ParameterKind) -> ParameterValue? {
        switch kind {
        case .integer, .seed: return Int(text).map(ParameterValue.integer)
        case .number: return Double(text).map(ParameterValue.number)
        case .boolean: return text == "true" ? .boolean(true) : text == "false" ? .boolean(false) : nil
        case .choice(let options): return options.contains(text) ? .text(text) : nil
        case .text, .inputPath, .outputPath: return .text(text)
        }
    }
}
