import Foundation
import Hummingbird
import HummingbirdWebSocket
import NodeKit
import Synchronization
import WorkflowEngine

/// The WebSocket clients by client id, and the messages ComfyUI sends them: `status` to all,
/// the rest (`execution_start`, `executing`, `progress`, `executed`, ...) to the prompt's client.
actor ClientHub {
    private var clients: [String: [(id: UUID, writer: WebSocketOutboundWriter)]] = [:]

    func add(_ clientID: String, _ id: UUID, _ writer: WebSocketOutboundWriter) { clients[clientID, default: []].append((id, writer)) }

    func remove(_ clientID: String, _ id: UUID) {
        clients[clientID]?.removeAll { $0.id == id }
        if clients[clientID]?.isEmpty == true { clients[clientID] = nil }
    }

    /// Sends a binary frame to `clientID`'s sockets.
    func sendBinary(_ data: Data, to clientID: String?) async {
        guard let clientID else { return }
        for target in clients[clientID] ?? [] { try? await target.writer.write(.binary(ByteBuffer(bytes: data))) }
    }

    /// Sends `{type, data}` to `clientID`'s sockets, or to every socket when nil.
    func send(_ type: String, _ data: [String: Any], to clientID: String?) async {
        guard let json = try? JSONSerialization.data(withJSONObject: ["type": type, "data": data], options: [.sortedKeys]),
              let text = String(data: json, encoding: .utf8) else { return }
        let targets = clientID.map { clients[$0] ?? [] } ?? clients.values.flatMap { $0 }
        for target in targets { try? await target.writer.write(.text(text)) }
    }
}

/// A message for the clients, made on the thread that runs a prompt and sent in order: JSON
/// `{type, data}`, or with `binary` a preview frame.
struct Event: @unchecked Sendable {  // `data` holds JSON values only (strings, numbers, arrays, dictionaries)
    let type: String
    let data: [String: Any]
    let clientID: String?
    var binary: Data?

    init(type: String, data: [String: Any], clientID: String?, binary: Data? = nil) {
        (self.type, self.data, self.clientID, self.binary) = (type, data, clientID, binary)
    }
}

/// Turns the executor's reports into ComfyUI's messages: `executing` when a node starts,
/// `progress` for sampler steps, `executed` for an output node's images. sdflow nodes are named
/// `n<id>` (and `n<id>_mask`) by the import, so the ComfyUI id is the name without them.
final class EventReporter: RunReporter, Sendable {
    let prompt: QueuedPrompt
    let events: AsyncStream<Event>.Continuation
    /// Output node id -> its image, for `executed`.
    let images: [String: ImageRef]
    private let current = Mutex<String?>(nil)

    init(prompt: QueuedPrompt, events: AsyncStream<Event>.Continuation, images: [String: ImageRef]) {
        self.prompt = prompt
        self.events = events
        self.images = images
    }

    static func comfyID(_ name: String) -> String {
        let bare = name.hasPrefix("n") ? String(name.dropFirst()) : name
        return bare.hasSuffix("_mask") ? String(bare.dropLast(5)) : bare
    }

    func send(_ type: String, _ data: [String: Any]) {
        events.yield(Event(type: type, data: data.merging(["prompt_id": prompt.id]) { a, _ in a }, clientID: prompt.clientID))
    }

    func nodeStarted(_ name: String, type: String, item: BatchItem?, itemCount: Int?) {
        let id = Self.comfyID(name)
        let changed = current.withLock { previous -> Bool in
            defer { previous = id }
            return previous != id
        }
        if changed { send("executing", ["node": id, "display_node": id]) }
    }

    func nodeProgress(_ name: String, completed: Int, total: Int) {
        send("progress", ["value": completed, "max": total, "node": Self.comfyID(name)])
    }

    /// Progress, and the live preview the sampler wrote ("preview: PATH") as ComfyUI's binary frame:
    /// event 1 (PREVIEW_IMAGE) and image type 2 (PNG), big-endian 32-bit each, then the PNG.
    func nodeProgress(_ name: String, completed: Int, total: Int, note: String?) {
        nodeProgress(name, completed: completed, total: total)
        guard let note, note.hasPrefix("preview: "), let png = FileManager.default.contents(atPath: String(note.dropFirst(9))) else { return }
        events.yield(Event(type: "preview", data: [:], clientID: prompt.clientID, binary: Data([0, 0, 0, 1, 0, 0, 0, 2]) + png))
    }

    func nodeFinished(_ report: NodeReport) {
        let id = Self.comfyID(report.name)
        if let image = images[id], report.status == .ran || report.status == .diskHit || report.status == .memoryHit {
            send("executed", ["node": id, "display_node": id, "output": ["images": [image.json]]])
        }
    }

    func itemStarted(_ item: BatchItem, position: Int, count: Int) {}
    func itemFinished(_ report: ItemReport, position: Int, count: Int) {}
    func warning(_ message: String) {}
}
