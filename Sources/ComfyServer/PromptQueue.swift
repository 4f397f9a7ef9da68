import Foundation

/// One prompt as ComfyUI's API describes it: the graph, who sent it, and its place in the queue.
struct QueuedPrompt: Sendable {
    let number: Int
    let id: String
    /// The API-format graph, as JSON (kept as sent, for `/queue` and `/history`).
    let graph: Data
    let clientID: String?
    /// The output (save and preview) node ids.
    let outputs: [String]
    /// The sdflow workflow the graph became when it was checked (`ComfyImport`).
    let workflow: String
}

/// What a finished prompt left: its outputs' files per node, and how it ended.
struct HistoryEntry: Sendable {
    let prompt: QueuedPrompt
    /// Node id -> images written, as `{filename, subfolder, type}`.
    var images: [String: [ImageRef]]
    var status: String
    var messages: [(String, [String: String])]
}

/// A file of a prompt's result, as ComfyUI names it to clients.
struct ImageRef: Sendable {
    let filename: String
    let subfolder: String
    let type: String

    var json: [String: Any] { ["filename": filename, "subfolder": subfolder, "type": type] }
}

/// The FIFO queue of prompts (one runs at a time) and the history of finished ones, bounded.
actor PromptQueue {
    private(set) var pending: [QueuedPrompt] = []
    private(set) var running: QueuedPrompt?
    private(set) var history: [(String, HistoryEntry)] = []
    private var counter = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    let capacity: Int
    let historyCapacity: Int

    init(capacity: Int = 1000, historyCapacity: Int = 1000) {
        self.capacity = capacity
        self.historyCapacity = historyCapacity
    }

    /// A full queue.
    struct Full: Error {}

    /// Adds a prompt at the back (`front`: at the front); returns its number.
    func enqueue(id: String, graph: Data, workflow: String, clientID: String?, outputs: [String], front: Bool = false) throws -> QueuedPrompt {
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

    func finish(_ entry: HistoryEntry) {
        running = nil
        history.append((entry.prompt.id, entry))
        if history.count > historyCapacity { history.removeFirst(history.count - historyCapacity) }
    }

    func clearPending() { pending.removeAll() }
    func delete(_ ids: Set<String>) { pending.removeAll { ids.contains($0.id) } }
    func clearHistory() { history.removeAll() }
    func deleteHistory(_ ids: Set<String>) { history.removeAll { ids.contains($0.0) } }
    var remaining: Int { pending.count + (running == nil ? 0 : 1) }
}
