import Foundation
import NodeKit

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

/// The outcome of a run, printed as a summary or as JSON (`--summary json`).
public struct RunReport: Codable, Sendable {
    public var workflow: String
    public var nodes: [NodeReport]
    public var seconds: Double
    /// Seeds drawn for `seed: random`, by node.
    public var seeds: [String: Int]
    public var warnings: [String]
    public var cancelled: Bool

    /// True when nothing failed or was skipped.
    public var succeeded: Bool {
        !cancelled && nodes.allSatisfy { ![.failed, .partial, .skipped, .cancelled].contains($0.status) }
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
    func nodeFinished(_ report: NodeReport)
    func warning(_ message: String)
}

/// A stop request shared by the executor and the nodes (set by Ctrl-C).
public final class Cancellation: @unchecked Sendable {
    private var flag = false
    private let lock = NSLock()

    public init() {}

    public var isCancelled: Bool {
        lock.lock(); defer { lock.unlock() }
        return flag
    }

    public func cancel() {
        lock.lock(); flag = true; lock.unlock()
    }
}
