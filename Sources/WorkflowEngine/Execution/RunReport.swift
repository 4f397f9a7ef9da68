import Foundation
import NodeKit
import Synchronization

/// What happened to one node in a run.
public struct NodeReport: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        /// Computed in this run.
        case ran
        /// Taken from this run's memory (another node computed the same thing).
        case memoryHit = "memory-hit"
        /// Taken from the disk cache.
        case diskHit = "disk-hit"
        /// Some items were computed and some taken from the cache (batches).
        case mixed
        /// Failed (for a batch: every item failed).
        case failed
        /// Some items of a batch failed, the others succeeded.
        case partial
        /// Not run because an input failed.
        case skipped
        /// The run was stopped.
        case cancelled
        /// Explain mode: will be taken from the cache.
        case willHit = "will-hit"
        /// Explain mode: will be computed.
        case willRun = "will-run"
        /// Not run: with `--shard`, shard 0 writes the outputs that are not part of a batch, and
        /// a shard without items needs nothing that only the batch uses.
        case notNeeded = "not-needed"
    }

    public let name: String
    public let type: String
    public var status: Status
    public var seconds: Double
    /// Items of a batch, when the node ran per item.
    public var items: Int?
    /// Items computed (not served from the cache).
    public var computed: Int
    /// Failures: the whole node, or per batch item ("photo_03: corrupt PNG ...").
    public var errors: [String]
    /// Why it runs (explain mode) or other notes.
    public var notes: [String]
}

/// What happened to one item of a batch: every node that runs per item, for this item.
public struct ItemReport: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        /// Something was computed for it and its outputs were written.
        case done
        /// Every result came from the cache and its outputs were already up to date.
        case cached
        /// A node failed for this item (or its file could not be read).
        case failed
        /// The run was stopped during this item.
        case cancelled
        /// Explain mode: something will be computed, or everything comes from the cache.
        case willRun = "will-run", willHit = "will-hit"
    }

    /// The item's position in the whole list (the same in every shard).
    public let index: Int
    /// Its file's name without extension (`{stem}`).
    public let stem: String
    /// Its file, relative to the folder listed (what `--shard` hashes).
    public let source: String
    public var status: Status
    /// The files written (or up to date) for it.
    public var outputs: [String]
    public var seconds: Double
    /// Nodes computed for it, and nodes whose result came from the cache (or an up-to-date file).
    public var computed: Int
    public var cacheHits: Int
    public var errors: [String]
}

/// The outcome of a run, printed as a summary or as JSON (`--summary json`).
public struct RunReport: Codable, Sendable {
    public var workflow: String
    public var nodes: [NodeReport]
    /// The batch's items that this run took (all of them, or this shard's), in order.
    public var items: [ItemReport] = []
    /// Items in the whole batch (before `--shard` chose some).
    public var batchSize: Int?
    /// `I/N` with `--shard`.
    public var shard: String?
    public var seconds: Double
    /// Seeds drawn for `seed: random`, by node.
    public var seeds: [String: Int]
    public var warnings: [String]
    public var cancelled: Bool
    /// Problems found before anything ran (two outputs writing one file): nothing was run.
    public var refused: [String] = []

    public init(workflow: String, seeds: [String: Int] = [:]) {
        self.workflow = workflow
        nodes = []
        seconds = 0
        self.seeds = seeds
        warnings = []
        cancelled = false
    }

    /// True when nothing failed or was skipped.
    public var succeeded: Bool {
        refused.isEmpty && !cancelled && nodes.allSatisfy { ![.failed, .partial, .skipped, .cancelled].contains($0.status) }
    }

    /// The names of nodes that computed something in this run.
    public var executedNodes: [String] { nodes.filter { $0.computed > 0 }.map(\.name) }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(data: (try? encoder.encode(self)) ?? Data(), encoding: .utf8) ?? "{}"
    }
}

/// Receives a run's progress (the CLI prints it; tests collect it).
public protocol RunReporter: AnyObject {
    func nodeStarted(_ name: String, type: String, item: BatchItem?, itemCount: Int?)
    func nodeProgress(_ name: String, completed: Int, total: Int)
    /// Progress with a note for the progress line (where a live preview is written).
    func nodeProgress(_ name: String, completed: Int, total: Int, note: String?)
    func nodeFinished(_ report: NodeReport)
    /// A batch item starts; `position` counts from 1 up to `count`, the items this run takes.
    func itemStarted(_ item: BatchItem, position: Int, count: Int)
    func itemFinished(_ report: ItemReport, position: Int, count: Int)
    func warning(_ message: String)
}

extension RunReporter {
    public func nodeProgress(_ name: String, completed: Int, total: Int, note: String?) {
        nodeProgress(name, completed: completed, total: total)
    }
}

/// A stop request shared by the executor and the nodes (set by Ctrl-C and SIGTERM).
public final class Cancellation: Sendable {
    private struct State { var stopNow = false, stopAfterItem = false, batchRunning = false }
    private let state = Mutex(State())

    public init() {}

    /// Stop as soon as possible (nodes check it between sampler steps).
    public var isCancelled: Bool { state.withLock { $0.stopNow } }
    public func cancel() { state.withLock { $0.stopNow = true } }

    /// Stop once the current batch item is finished (its outputs written).
    public var stopsAfterItem: Bool { state.withLock { $0.stopAfterItem || $0.stopNow } }
    public func cancelAfterItem() { state.withLock { $0.stopAfterItem = true } }

    /// Set by the executor while a batch has items to go: then the first Ctrl-C waits for the
    /// current item instead of dropping it.
    public var isInBatch: Bool {
        get { state.withLock { $0.batchRunning } }
        set { state.withLock { $0.batchRunning = newValue } }
    }
}
