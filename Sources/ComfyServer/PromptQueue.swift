import Foundation
import TensorCore

/// One prompt as ComfyUI's API describes it: the graph, who sent it, and its place in the queue.
struct QueuedPrompt: Codable, Sendable {
    let number: Int
    let id: String
    /// The API-format graph as JSON text (kept as sent, for `/queue` and `/history`).
    let graph: String
    let clientID: String?
    /// The output (save and preview) node ids.
    let outputs: [String]
    /// The sdflow workflow the graph became when it was checked (`ComfyImport`).
    let workflow: String
}

/// What a finished prompt left: its outputs' files per node, how it ended, and ComfyUI's status
/// messages (`execution_start`, `execution_cached`, then success, error or interrupted).
struct HistoryEntry: Codable, Sendable {
    let prompt: QueuedPrompt
    /// Node id -> images written, as `{filename, subfolder, type}`.
    var images: [String: [ImageRef]]
    var status: String
    var messages: [StatusMessage]
}

/// One of the status messages ComfyUI keeps in a history entry, with its time in milliseconds
/// since 1970; `nodes` for `execution_cached`, `node`/`error` for `execution_error`.
struct StatusMessage: Codable, Sendable {
    let type: String
    let timestamp: Int
    var nodes: [String]?
    var node: String?
    var error: String?

    init(_ type: String, at date: Date = Date(), nodes: [String]? = nil, node: String? = nil, error: String? = nil) {
        self.type = type
        timestamp = Int(date.timeIntervalSince1970 * 1000)
        (self.nodes, self.node, self.error) = (nodes, node, error)
    }

    /// `[type, {prompt_id, timestamp, ...}]` as ComfyUI's history shows it.
    func json(promptID: String) -> [Any] {
        var data: [String: Any] = ["prompt_id": promptID, "timestamp": timestamp]
        if let nodes { data["nodes"] = nodes }
        if let node { data["node_id"] = node }
        if let error { data["exception_message"] = error }
        return [type, data]
    }
}

/// A file of a prompt's result, as ComfyUI names it to clients.
struct ImageRef: Codable, Sendable {
    let filename: String
    let subfolder: String
    let type: String

    var json: [String: Any] { ["filename": filename, "subfolder": subfolder, "type": type] }
}

/// The FIFO queue of prompts (one runs at a time) and the history of finished ones, bounded. The
/// history is also kept in a file (one JSON entry per line), so a restarted server still lists
/// what it finished before.
actor PromptQueue {
    private(set) var pending: [QueuedPrompt] = []
    private(set) var running: QueuedPrompt?
    private(set) var history: [HistoryEntry] = []
    private var counter = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    let capacity: Int
    let historyCapacity: Int
    /// The history's file; nil keeps it in memory only.
    let historyFile: String?

    /// A queue whose history is read from `historyFile` (when there is one) and appended to it.
    init(capacity: Int = 1000, historyCapacity: Int = 1000, historyFile: String? = nil) {
        self.capacity = capacity
        self.historyCapacity = historyCapacity
        self.historyFile = historyFile
        guard let historyFile, let text = try? String(contentsOfFile: historyFile, encoding: .utf8) else { return }
        // A line that does not read (a crash mid-write) is skipped; the rest stays.
        let decoder = JSONDecoder()
        history = text.split(separator: "\n").compactMap { try? decoder.decode(HistoryEntry.self, from: Data($0.utf8)) }.suffix(historyCapacity)
        counter = (history.map(\.prompt.number).max() ?? -1) + 1
        // Without its cut line, so that the next entry is appended on a line of its own.
        if !text.isEmpty && !text.hasSuffix("\n") { Self.write(history, to: historyFile) }
    }

    /// A full queue.
    struct Full: Error {}

    /// Adds a prompt at the back (`front`: at the front); returns its number.
    func enqueue(id: String, graph: String, workflow: String, clientID: String?, outputs: [String], front: Bool = false) throws -> QueuedPrompt {
        guard pending.count < capacity else { throw Full() }
        let prompt = QueuedPrompt(number: counter, id: id, graph: graph, clientID: clientID, outputs: outputs, workflow: workflow)
        counter += 1
        if front { pending.insert(prompt, at: 0) } else { pending.append(prompt) }
        waiters.forEach { $0.resume() }
        waiters.removeAll()
        return prompt
    }

    /// The next prompt to run, waiting for one.
    func next() async -> QueuedPrompt {
        while pending.isEmpty {
            await withCheckedContinuation { waiters.append($0) }
        }
        let prompt = pending.removeFirst()
        running = prompt
        return prompt
    }

    /// Records a finished prompt (in memory and at the end of the history file).
    func finish(_ entry: HistoryEntry) {
        running = nil
        history.append(entry)
        if history.count > historyCapacity {
            history.removeFirst(history.count - historyCapacity)
            saveHistory()  // keeps the file as bounded as the list
        } else if let historyFile, let line = try? JSONEncoder().encode(entry) {
            Self.append(line + Data("\n".utf8), to: historyFile)
        }
    }

    func entry(_ id: String) -> HistoryEntry? { history.last { $0.prompt.id == id } }
    func clearPending() { pending.removeAll() }
    func delete(_ ids: Set<String>) { pending.removeAll { ids.contains($0.id) } }
    func clearHistory() {
        history.removeAll()
        saveHistory()
    }
    func deleteHistory(_ ids: Set<String>) {
        history.removeAll { ids.contains($0.prompt.id) }
        saveHistory()
    }
    var remaining: Int { pending.count + (running == nil ? 0 : 1) }

    /// Rewrites the history file whole (atomically).
    private func saveHistory() {
        if let historyFile { Self.write(history, to: historyFile) }
    }

    private static func write(_ history: [HistoryEntry], to path: String) {
        let encoder = JSONEncoder()
        let lines = history.compactMap { try? encoder.encode($0) }.map { $0 + Data("\n".utf8) }
        try? AtomicFile.write(lines.reduce(Data(), +), to: path)
    }

    private static func append(_ data: Data, to path: String) {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: data)
    }
}
