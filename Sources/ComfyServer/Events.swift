import Foundation
import Hummingbird
import HummingbirdWebSocket
import NodeKit
import Synchronization
import WorkflowEngine

/// The WebSocket clients by client id, and the messages ComfyUI sends them: `status` to all,
/// the rest (`execution_start`, `executing`, `progress`, `executed`, ...) to the prompt's client.
actor ClientHub {
    private var clients: [String: [Socket]] = [:]

    /// One WebSocket of a client, and whether it asked for previews with metadata (its
    /// `feature_flags` message said `supports_preview_metadata`).
    private struct Socket {
        let id: UUID
        let writer: WebSocketOutboundWriter
        var previewMetadata = false
    }

    /// The feature flags the server announces in answer to a client's.
    static var featureFlags: [String: Any] { ["supports_preview_metadata": true] }

    func add(_ clientID: String, _ id: UUID, _ writer: WebSocketOutboundWriter) { clients[clientID, default: []].append(Socket(id: id, writer: writer)) }

    /// A client's text message: `feature_flags` is answered with the server's, and remembered.
    func received(_ text: String, from clientID: String, _ id: UUID) async {
        guard let message = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              message["type"] as? String == "feature_flags", let index = clients[clientID]?.firstIndex(where: { $0.id == id }) else { return }
        let flags = message["data"] as? [String: Any] ?? [:]
        clients[clientID]?[index].previewMetadata = flags["supports_preview_metadata"] as? Bool == true
        guard let writer = clients[clientID]?[index].writer,
              let json = try? JSONSerialization.data(withJSONObject: ["type": "feature_flags", "data": Self.featureFlags], options: [.sortedKeys])
        else { return }
        try? await writer.write(.text(String(decoding: json, as: UTF8.self)))
    }

    func remove(_ clientID: String, _ id: UUID) {
        clients[clientID]?.removeAll { $0.id == id }
        if clients[clientID]?.isEmpty == true { clients[clientID] = nil }
    }

    /// Sends a live preview to `clientID`'s sockets as ComfyUI's binary frame: event 4
    /// (PREVIEW_IMAGE_WITH_METADATA: the metadata's length and JSON, then the PNG) to sockets that
    /// asked for it, else event 1 (PREVIEW_IMAGE) with image type 2 (PNG); big-endian 32-bit numbers.
    func sendPreview(_ preview: Preview, to clientID: String?) async {
        guard let clientID else { return }
        let metadata: [String: Any] = ["node_id": preview.node, "display_node_id": preview.node, "real_node_id": preview.node,
                                       "parent_node_id": NSNull(), "prompt_id": preview.promptID, "image_type": "image/png"]
        let json = (try? JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])) ?? Data("{}".utf8)
        func bigEndian(_ value: Int) -> Data { withUnsafeBytes(of: UInt32(value).bigEndian) { Data($0) } }
        let withMetadata = bigEndian(4) + bigEndian(json.count) + json + preview.png
        let classic = bigEndian(1) + bigEndian(2) + preview.png
        for target in clients[clientID] ?? [] {
            try? await target.writer.write(.binary(ByteBuffer(bytes: target.previewMetadata ? withMetadata : classic)))
        }
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
/// `{type, data}`, or a live preview.
struct Event: @unchecked Sendable {  // `data` holds JSON values only (strings, numbers, arrays, dictionaries)
    let type: String
    let data: [String: Any]
    let clientID: String?
    var preview: Preview?

    init(type: String, data: [String: Any], clientID: String?, preview: Preview? = nil) {
        (self.type, self.data, self.clientID, self.preview) = (type, data, clientID, preview)
    }
}

/// A sampler's live preview: the PNG, and the node and prompt it belongs to.
struct Preview: Sendable {
    let png: Data
    let node: String
    let promptID: String
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

    /// Progress, and the live preview the sampler wrote ("preview: PATH").
    func nodeProgress(_ name: String, completed: Int, total: Int, note: String?) {
        nodeProgress(name, completed: completed, total: total)
        guard let note, note.hasPrefix("preview: "), let png = FileManager.default.contents(atPath: String(note.dropFirst(9))) else { return }
        let preview = Preview(png: png, node: Self.comfyID(name), promptID: prompt.id)
        events.yield(Event(type: "preview", data: [:], clientID: prompt.clientID, preview: preview))
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
