import Foundation
import ImageIO
import TensorCore

/// A node type: a description and a function from inputs and parameters to outputs.
///
/// Nodes are pure as far as the engine can tell: the same inputs and parameters (and the same
/// contents of the files they read) give the same outputs, which is what makes caching sound.
/// Randomness comes only from seed parameters.
public protocol Node {
    static var description: NodeDescription { get }
    /// Computes the outputs (by output port name) of one execution.
    static func run(_ context: NodeContext) throws -> [String: Value]
}

/// A node whose list outputs can be produced one item at a time (a folder loader). The engine
/// first asks for the items, which is cheap (file names), and produces each one only when the
/// batch reaches it, so a folder of any size streams through the graph in bounded memory.
/// `run` (for callers that want the whole list) is provided: every item, in order.
public protocol StreamingListNode: Node {
    /// The items, in list order.
    static func items(_ context: NodeContext) throws -> [ListItem]
    /// One item's value for every list output (by port name); `Value.failed` for an output the
    /// item could not give (a corrupt file), so that the other items go on.
    static func produce(_ item: ListItem, context: NodeContext) throws -> [String: Value]
}

extension StreamingListNode {
    public static func run(_ context: NodeContext) throws -> [String: Value] {
        var lists: [String: [Value]] = [:]
        for item in try items(context) {
            try context.checkCancelled()
            for (port, value) in try produce(item, context: context) { lists[port, default: []].append(value) }
        }
        return Dictionary(uniqueKeysWithValues: description.outputs.map { ($0.name, Value.list(lists[$0.name] ?? [])) })
    }
}

/// One item of a streamed list: the file it comes from.
public struct ListItem: Sendable, Equatable {
    /// The file (absolute path).
    public let path: String
    /// The path relative to the folder that was listed; `--shard` assigns items by its hash, so
    /// adding a file does not move the others to another shard.
    public let relativePath: String

    public init(path: String, relativePath: String) {
        self.path = path
        self.relativePath = relativePath
    }

    /// The file's name without folder and extension (`{stem}` in output paths).
    public var stem: String { URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent }
}

/// A node that writes files. The engine resolves every execution's files before anything runs,
/// so two outputs (two batch items, or two nodes) that would write the same file are refused
/// instead of one silently replacing the other.
public protocol FileWritingNode: Node {
    /// The files one execution writes. `context` has the parameters, the batch item and the run
    /// information, but no inputs (they are not computed yet).
    static func outputFiles(_ context: NodeContext) throws -> [String]
    /// Whether the files already hold this execution's result (`context.executionKey`); the
    /// engine then leaves them alone without computing the inputs' values again.
    static func isUpToDate(_ context: NodeContext) -> Bool
}

extension FileWritingNode {
    public static func isUpToDate(_ context: NodeContext) -> Bool { false }
}

/// What a running node can see and do; provided by the engine.
public protocol NodeContext: AnyObject {
    /// The node's name in the workflow (for messages).
    var nodeName: String { get }
    /// The value connected to an input, or nil when an optional input is not connected.
    func input(_ name: String) -> Value?
    /// A parameter's value (its default when the workflow does not set it).
    func parameter(_ name: String) -> ParameterValue?
    /// When the node runs for one item of a batch: the item's index and file stem.
    var batchItem: BatchItem? { get }
    /// The cache key of this execution (stable across runs for the same inputs).
    var executionKey: String { get }
    /// Models loaded in this run, shared by every node (one load per run).
    var models: ModelCache { get }
    /// Reports progress within the node (e.g. sampler steps).
    func progress(completed: Int, total: Int)
    /// Reports progress with a note for the progress line (e.g. where the live preview is).
    func progress(completed: Int, total: Int, note: String?)
    /// True once the user asked to stop (Ctrl-C); long loops should check it and throw `NodeError.cancelled`.
    var isCancelled: Bool { get }
    /// A warning shown to the user, attributed to this node.
    func warn(_ message: String)
    /// Extra information about the run that output nodes record (the workflow text, resolved parameters).
    var runInfo: RunInfo { get }
}

/// One item of a batch.
public struct BatchItem: Sendable, Equatable {
    public let index: Int
    /// The source file's name without folder and extension (`photo_01` for `in/photo_01.jpg`).
    public let stem: String

    public init(index: Int, stem: String) {
        self.index = index
        self.stem = stem
    }
}

/// The run a node is part of, for metadata written into outputs.
public struct RunInfo: Sendable {
    /// The workflow file's text.
    public let workflowText: String
    /// The workflow file's path (relative paths in it are relative to its folder).
    public let workflowPath: String
    /// The workflow's top-level parameters after `--set`, as text.
    public let parameters: [String: String]
    /// This node and every node it depends on, with resolved parameters (seeds as numbers).
    public let upstream: [UpstreamNode]
    /// The image the workflow was read from (`sdflow run IMAGE.png`), which outputs must not replace.
    public let sourceImage: String?
    /// The generation settings the upstream nodes describe (`GenerationDescribing`), by A1111's
    /// names ("Steps", "Sampler", "CFG scale", "Seed", "Model", ..., and "prompt", "negative"); the
    /// nearest node's value wins.
    public let generation: [String: String]

    /// A node feeding (directly or not) the current one.
    public struct UpstreamNode: Sendable {
        public let name: String
        public let type: String
        /// Resolved values (seeds as the numbers drawn).
        public let parameters: [String: ParameterValue]
        /// Input port -> the node connected to it.
        public let inputs: [String: String]

        /// A parameter's value as its declared type (nil when the node has no such value).
        public subscript<Value>(_ parameter: Param<Value>) -> Value? { parameters[parameter.name].flatMap(Value.coding.read) }

        public init(name: String, type: String, parameters: [String: ParameterValue], inputs: [String: String]) {
            self.name = name
            self.type = type
            self.parameters = parameters
            self.inputs = inputs
        }
    }

    public init(workflowText: String, workflowPath: String, parameters: [String: String], upstream: [UpstreamNode],
                sourceImage: String? = nil, generation: [String: String] = [:]) {
        self.workflowText = workflowText
        self.workflowPath = workflowPath
        self.parameters = parameters
        self.upstream = upstream
        self.sourceImage = sourceImage
        self.generation = generation
    }
}

/// A node whose settings belong in the generation parameters that saved images record (A1111's
/// "parameters" text), so that output nodes need not know other packs' node types.
public protocol GenerationDescribing: Node {
    /// This node's settings by A1111's names, from its resolved parameters (`node`) and the other
    /// upstream nodes by name (`upstream`, e.g. to find the prompt's text).
    static func generationParameters(_ node: RunInfo.UpstreamNode, upstream: [String: RunInfo.UpstreamNode]) -> [String: String]
}

/// Errors a node raises; the engine adds the node's name and file position.
public enum NodeError: Error, CustomStringConvertible {
    /// Wrong or missing input or parameter value (caught at run time).
    case invalidInput(String)
    /// The node could not do its work (a file, a model, a computation).
    case failed(String)
    /// The user stopped the run.
    case cancelled

    public var description: String {
        switch self {
        case .invalidInput(let m), .failed(let m): return m
        case .cancelled: return "cancelled"
        }
    }
}

extension NodeContext {
    /// Contexts without notes (plugins) report the progress alone.
    public func progress(completed: Int, total: Int, note: String?) { progress(completed: completed, total: total) }
}

// MARK: - Typed access

extension NodeContext {
    /// A required input of a given kind, or an error naming the port.
    func required<T>(_ name: String, _ kind: String, _ extract: (Value) -> T?) throws -> T {
        guard let value = input(name) else { throw NodeError.invalidInput("input '\(name)' is not connected") }
        guard let typed = extract(value) else { throw NodeError.invalidInput("input '\(name)' is not \(kind) but \(value.type)") }
        return typed
    }

    public func image(_ name: String) throws -> Image { try required(name, "an image") { $0.imageValue } }
    public func mask(_ name: String) throws -> Image { try required(name, "a mask") { $0.maskValue } }
    public func latent(_ name: String) throws -> Tensor { try required(name, "a latent") { $0.latentValue } }
    public func conditioning(_ name: String) throws -> Tensor { try required(name, "conditioning") { $0.conditioningValue } }
    public func tensor(_ name: String) throws -> Tensor { try required(name, "a tensor") { $0.tensorValue } }
    public func model(_ name: String) throws -> ModelHandle { try required(name, "a model") { $0.modelValue } }

    public func int(_ name: String) throws -> Int {
        guard let v = parameter(name)?.intValue else { throw NodeError.invalidInput("parameter '\(name)' is not an integer") }
        return v
    }

    public func double(_ name: String) throws -> Double {
        guard let v = parameter(name)?.doubleValue else { throw NodeError.invalidInput("parameter '\(name)' is not a number") }
        return v
    }

    public func string(_ name: String) throws -> String {
        guard let v = parameter(name)?.stringValue else { throw NodeError.invalidInput("parameter '\(name)' is not text") }
        return v
    }

    public func bool(_ name: String) throws -> Bool {
        guard let v = parameter(name)?.boolValue else { throw NodeError.invalidInput("parameter '\(name)' is not true or false") }
        return v
    }

    /// Throws `NodeError.cancelled` when the run was stopped.
    public func checkCancelled() throws {
        if isCancelled { throw NodeError.cancelled }
    }
}

/// The key of a model in a run's `ModelCache`: what was loaded (e.g. the checkpoint's path and
/// part) and as which type, so that a lookup gives back the type it stored.
public struct ModelKey<Model>: Sendable {
    public let name: String
    public init(_ name: String) { self.name = name }
}

/// Models loaded during a run, by key, so that every node using the same checkpoint shares one copy.
/// A server keeps one for its life and calls `endRun` after each prompt, which drops the models
/// the latest prompts did not use. `@unchecked Sendable`: its state is read and written only under `lock`.
public final class ModelCache: @unchecked Sendable {
    /// A key's name and model type.
    private struct Slot: Hashable {
        let name: String
        let type: ObjectIdentifier
    }
    private var models: [Slot: (model: Any, lastRun: Int)] = [:]
    private var run = 0
    private let lock = NSLock()

    public init() {}

    /// The model under `key`, loaded with `load` the first time it is asked for (outside the lock,
    /// so that loads of different models do not wait for each other; the first to finish is kept).
    public func model<Model>(_ key: ModelKey<Model>, load: () throws -> Model) throws -> Model {
        let slot = Slot(name: key.name, type: ObjectIdentifier(Model.self))
        let hit = lock.withLock { () -> Model? in
            guard let entry = models[slot], let model = entry.model as? Model else { return nil }
            models[slot]?.lastRun = run
            return model
        }
        if let hit { return hit }
        let value = try load()
        return lock.withLock {
            if let existing = models[slot]?.model as? Model { return existing }
            models[slot] = (value, run)
            return value
        }
    }

    /// Ends a run: the models that neither it nor the `runs - 1` runs before it used are dropped.
    public func endRun(keepingModelsOfLast runs: Int) {
        lock.withLock {
            models = models.filter { $0.value.lastRun > run - runs }
            run += 1
        }
    }

    /// How many models are loaded.
    public var count: Int { lock.withLock { models.count } }
}
