import Foundation
import Hummingbird
import HummingbirdWebSocket
import NodeKit
import Synchronization
import TensorCore
import WorkflowEngine

/// `sdflow serve`: ComfyUI's HTTP and WebSocket API over the workflow engine, so that ComfyUI's API
/// clients drive sdflow. Prompts (API-format graphs) are converted by `ComfyImport`, queued, and run
/// one at a time with the models kept loaded between them (and the disk cache as on the command line).
public final class ComfyServer: Sendable {
    /// How the server runs.
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 8188
        /// Required on every route and the WebSocket (`Authorization: Bearer T` or `?token=T`);
        /// nil only on a loopback address.
        public var token: String?
        public var folders: Folders
        public var compute: ComputeSettings
        /// Results kept across prompts and restarts; nil for memory only.
        public var cache: ResultCache?
        /// The largest request body (uploads, prompts).
        public var maxBody = 100 << 20
        /// ComfyUI's web front end (the `static` folder of the `comfyui-frontend-package` Python
        /// package), served at `/`; without it `/` is a status page of sdflow's own.
        public var frontEnd: String?
        /// Models stay loaded while one of this many latest prompts used them.
        public var keepModelsOfLast = 2

        public init(folders: Folders, compute: ComputeSettings = .current, cache: ResultCache? = nil) {
            self.folders = folders
            self.compute = compute
            self.cache = cache
        }
    }

    /// A server that could not start.
    public struct ConfigurationError: Error, CustomStringConvertible {
        public let description: String
    }

    let options: Options
    let registry: NodeRegistry
    let queue: PromptQueue
    let hub = ClientHub()
    let models = ModelCache()
    let fingerprints = FileFingerprints()
    let cancellation = Mutex(Cancellation())
    private let events: AsyncStream<Event>
    private let eventSink: AsyncStream<Event>.Continuation

    public init(options: Options, registry: NodeRegistry) throws {
        let loopback = ["127.0.0.1", "localhost", "::1"].contains(options.host)
        guard loopback || !(options.token ?? "").isEmpty else {
            throw ConfigurationError(description: "listening on \(options.host) needs --token (any other address than 127.0.0.1 is reachable from the network)")
        }
        self.options = options
        self.registry = registry
        queue = PromptQueue(historyFile: options.folders.user.deletingLastPathComponent().appendingPathComponent("sdflow-history.jsonl").path)
        (events, eventSink) = AsyncStream.makeStream(of: Event.self)
    }

    /// The HTTP application (routes under `/` and `/api/`, and `/ws`).
    public func application() -> some ApplicationProtocol {
        let router = Router(context: BasicWebSocketRequestContext.self)
        if let token = options.token, !token.isEmpty { router.add(middleware: TokenMiddleware(token: token)) }
        for prefix in ["", "/api"] {
            routes(router, prefix: prefix)
            editorRoutes(router, prefix: prefix)
            uploadRoutes(router, prefix: prefix)
        }
        if let frontEnd = options.frontEnd {
            router.add(middleware: FileMiddleware(frontEnd, searchForIndexHtml: true))
        } else {
            router.get("/") { [self] _, _ in try await statusPage() }
        }
        router.ws("/ws") { _, _ in .upgrade([:]) } onUpgrade: { [self] inbound, outbound, context in
            let clientID = context.request.uri.queryParameters.get("clientId") ?? UUID().uuidString
            let socket = UUID()
            await hub.add(clientID, socket, outbound)
            await hub.send("status", ["status": ["exec_info": ["queue_remaining": await queue.remaining]], "sid": clientID], to: clientID)
            for try await message in inbound.messages(maxSize: 1 << 16) {
                if case .text(let text) = message { await hub.received(text, from: clientID, socket) }
            }
            await hub.remove(clientID, socket)
        }
        return Application(router: router, server: .http1WebSocketUpgrade(webSocketRouter: router),
                           configuration: .init(address: .hostname(options.host, port: options.port), serverName: "sdflow"))
    }

    /// Serves until stopped: the application, and the worker that runs the queue.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.runWorker() }
            group.addTask { try await self.application().runService() }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Runs the queue's prompts, one at a time, and forwards events to the clients (for the server's life).
    public func runWorker() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.forwardEvents() }
            group.addTask {
                while !Task.isCancelled { await self.execute(await self.queue.next()) }
            }
        }
    }

    // MARK: - Routes

    private func routes(_ router: Router<BasicWebSocketRequestContext>, prefix: String) {
        router.post("\(prefix)/prompt") { [self] request, _ in try await postPrompt(request) }
        router.get("\(prefix)/prompt") { [self] _, _ in json(["exec_info": ["queue_remaining": await queue.remaining]]) }
        router.get("\(prefix)/queue") { [self] _, _ in
            let running = await queue.running.map { [queueItem($0)] } ?? []
            return json(["queue_running": running, "queue_pending": await queue.pending.map(queueItem)])
        }
        router.post("\(prefix)/queue") { [self] request, _ in
            let body = try await jsonBody(request)
            if body["clear"] as? Bool == true { await queue.clearPending() }
            if let ids = body["delete"] as? [String] { await queue.delete(Set(ids)) }
            await broadcastStatus()
            return json([:])
        }
        router.post("\(prefix)/interrupt") { [self] _, _ in
            cancellation.withLock { $0.cancel() }
            return json([:])
        }
        router.get("\(prefix)/history") { [self] request, _ in
            let limit = request.uri.queryParameters.get("max_items").flatMap(Int.init) ?? .max
            let entries = await queue.history.suffix(limit)
            return json(Dictionary(entries.map { ($0.prompt.id, historyItem($0)) }, uniquingKeysWith: { _, b in b }))
        }
        router.get("\(prefix)/history/:id") { [self] _, context in
            let id = context.parameters.get("id") ?? ""
            guard let entry = await queue.entry(id) else { return json([:]) }
            return json([id: historyItem(entry)])
        }
        router.post("\(prefix)/history") { [self] request, _ in
            let body = try await jsonBody(request)
            if body["clear"] as? Bool == true { await queue.clearHistory() }
            if let ids = body["delete"] as? [String] { await queue.deleteHistory(Set(ids)) }
            return json([:])
        }
        router.get("\(prefix)/view") { [self] request, _ in try view(request) }
        router.get("\(prefix)/system_stats") { _, _ in
            json(["system": ["os": "posix", "python_version": "", "embedded_python": false, "comfyui_version": "sdflow",
                             "pytorch_version": "", "argv": CommandLine.arguments,
                             "ram_total": Int(ProcessInfo.processInfo.physicalMemory), "ram_free": SystemMemory.available() ?? 0],
                  "devices": [["name": "cpu", "type": "cpu", "index": 0, "vram_total": 0, "vram_free": 0,
                               "torch_vram_total": 0, "torch_vram_free": 0]]])
        }
        router.get("\(prefix)/object_info") { [self] _, _ in json(ObjectInfo.all(options.folders, registry: registry)) }
        router.get("\(prefix)/object_info/:class") { [self] _, context in
            let name = context.parameters.get("class") ?? ""
            return json(ObjectInfo.all(options.folders, registry: registry).filter { $0.key == name })
        }
        router.get("\(prefix)/embeddings") { [self] _, _ in
            jsonArray(options.folders.files("embeddings").map { ($0 as NSString).deletingPathExtension })
        }
        router.get("\(prefix)/models") { _, _ in jsonArray(["checkpoints", "loras", "vae", "upscale_models", "embeddings", "controlnet"]) }
        router.get("\(prefix)/models/:folder") { [self] _, context in
            jsonArray(options.folders.files(context.parameters.get("folder") ?? ""))
        }
        router.get("\(prefix)/extensions") { _, _ in jsonArray([]) }
    }

    /// `POST /prompt`: checks the graph as far as it can before queueing (ComfyUI's `node_errors`
    /// shape on a 400), then queues it.
    private func postPrompt(_ request: Request) async throws -> Response {
        let body: [String: Any]
        do { body = try await jsonBody(request) } catch {
            return promptError("invalid_prompt", "Invalid JSON: \(error)", status: .badRequest)
        }
        guard let graph = body["prompt"] as? [String: Any] else { return promptError("no_prompt", "No prompt provided", status: .badRequest) }
        let data = try JSONSerialization.data(withJSONObject: graph)
        let text = String(decoding: data, as: UTF8.self)
        let outputs = graph.compactMap { id, node in
            ["SaveImage", "PreviewImage"].contains((node as? [String: Any])?["class_type"] as? String ?? "") ? id : nil
        }
        guard !outputs.isEmpty else { return promptError("prompt_no_outputs", "Prompt has no outputs", status: .badRequest) }
        let clientID = body["client_id"] as? String
        let workflow: String
        do {
            // Converted once, here; live previews go to the temp folder when a client listens.
            workflow = try ComfyImport(json: data, source: "prompt", files: fileLookup, registry: registry,
                                       previews: clientID == nil ? nil : options.folders.temp.appendingPathComponent("previews").path).yaml
            _ = try Graph(workflow: Workflow.parse(workflow, path: options.folders.output.path + "/prompt.yaml"), registry: registry,
                          overrides: try outputOverrides(graph, numbered: false).overrides)
        } catch let error as ComfyImport.ImportError {
            guard let node = error.node else { return promptError("invalid_prompt", error.description, status: .badRequest) }
            return promptError("prompt_outputs_failed_validation", "Prompt outputs failed validation", status: .badRequest,
                               nodeErrors: [node: ["errors": [["type": "invalid_input", "message": error.message ?? error.description,
                                                               "details": error.description, "extra_info": [:]]],
                                                   "dependent_outputs": [], "class_type": error.classType ?? ""]])
        } catch {
            return promptError("invalid_prompt", "\(error)", status: .badRequest)
        }
        let id = (body["prompt_id"] as? String) ?? UUID().uuidString.lowercased()
        let prompt: QueuedPrompt
        do {
            prompt = try await queue.enqueue(id: id, graph: text, workflow: workflow, clientID: clientID, outputs: outputs.sorted(),
                                             front: body["front"] as? Bool == true)
        } catch {
            return promptError("queue_full", "The queue is full (\(queue.capacity) prompts)", status: .serviceUnavailable)
        }
        await broadcastStatus()
        return json(["prompt_id": prompt.id, "number": prompt.number, "node_errors": [:]])
    }

    /// ComfyUI's error body.
    private func promptError(_ type: String, _ message: String, status: HTTPResponse.Status,
                             nodeErrors: [String: Any] = [:]) -> Response {
        json(["error": ["type": type, "message": message, "details": "", "extra_info": [:]], "node_errors": nodeErrors], status: status)
    }

    /// `GET /view?filename=&subfolder=&type=`: a file of the input, output or temp folder.
    private func view(_ request: Request) throws -> Response {
        let query = request.uri.queryParameters
        let path: String
        do {
            let kind = query.get("type") ?? "output"
            guard ["input", "output", "temp"].contains(kind) else { throw Folders.Refused(description: "/view serves the input, output and temp folders") }
            path = try options.folders.path(kind, query.get("filename") ?? "", subfolder: query.get("subfolder") ?? "")
        } catch {
            return json(["error": "\(error)"], status: .notFound)
        }
        guard let data = FileManager.default.contents(atPath: path) else { return json(["error": "cannot read the file"], status: .notFound) }
        let type = path.lowercased().hasSuffix(".png") ? "image/png" : path.lowercased().hasSuffix(".jpg") || path.lowercased().hasSuffix(".jpeg")
            ? "image/jpeg" : "application/octet-stream"
        return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Running prompts

    /// The files a prompt's nodes name, found in the server's folders.
    var fileLookup: ComfyImport.FileLookup {
        let folders = options.folders
        return { kind, name in try folders.path(kind, name) }
    }

    /// The output file of each save and preview node (ComfyUI's numbering), as workflow overrides.
    /// `numbered: false` (checking a posted prompt) confines the names to their folders without
    /// reading or creating the folders; the numbers are taken when the prompt runs.
    func outputOverrides(_ graph: [String: Any], numbered: Bool = true) throws -> (overrides: [String: String], images: [String: ImageRef]) {
        var overrides: [String: String] = [:], images: [String: ImageRef] = [:]
        for (id, value) in graph {
            guard let node = value as? [String: Any], let type = node["class_type"] as? String,
                  type == "SaveImage" || type == "PreviewImage" else { continue }
            let kind = type == "SaveImage" ? "output" : "temp"
            let prefix = type == "SaveImage" ? ((node["inputs"] as? [String: Any])?["filename_prefix"] as? String ?? "ComfyUI") : "preview_\(id)"
            guard numbered else {
                let place = try options.folders.outputPlace(kind, prefix: prefix)
                overrides["output_\(id)"] = (place.folder as NSString).appendingPathComponent(place.base + "_00000_.png")
                continue
            }
            let next = try options.folders.nextOutput(kind, prefix: prefix)
            overrides["output_\(id)"] = next.path
            images[id] = ImageRef(filename: next.filename, subfolder: next.subfolder, type: kind)
        }
        return (overrides, images)
    }

    /// Runs one prompt to the end and records it in the history.
    func execute(_ prompt: QueuedPrompt) async {
        let started = Date()
        send("execution_start", ["prompt_id": prompt.id, "timestamp": Int(started.timeIntervalSince1970 * 1000)], to: prompt.clientID)
        let cancellation = Cancellation()
        self.cancellation.withLock { $0 = cancellation }
        var entry = HistoryEntry(prompt: prompt, images: [:], status: "success", messages: [StatusMessage("execution_start", at: started)])
        do {
            let graphObject = try JSONSerialization.jsonObject(with: Data(prompt.graph.utf8)) as? [String: Any] ?? [:]
            let (overrides, images) = try outputOverrides(graphObject)
            let graph = try Graph(workflow: Workflow.parse(prompt.workflow, path: options.folders.output.path + "/prompt.yaml"),
                                  registry: registry, overrides: overrides)
            var executorOptions = Executor.Options(cache: options.cache, compute: options.compute)
            executorOptions.models = models
            executorOptions.fingerprints = fingerprints
            executorOptions.cancellation = cancellation
            executorOptions.reporter = EventReporter(prompt: prompt, events: eventSink, images: images)
            let run = Handover((graph, executorOptions))
            let report = await Self.onThread { Executor(graph: run.value.0, options: run.value.1).run() }
            let cached = report.nodes.filter { $0.status == .diskHit || $0.status == .memoryHit }.map { EventReporter.comfyID($0.name) }
            if !cached.isEmpty {
                let nodes = Array(Set(cached)).sorted()
                entry.messages.append(StatusMessage("execution_cached", nodes: nodes))
                send("execution_cached", ["nodes": nodes, "prompt_id": prompt.id], to: prompt.clientID)
            }
            for (id, image) in images where FileManager.default.fileExists(atPath: try options.folders.path(image.type, image.filename, subfolder: image.subfolder, mustExist: false)) {
                entry.images[id] = [image]
            }
            if report.cancelled {
                entry.status = "error"
                entry.messages.append(StatusMessage("execution_interrupted"))
                send("execution_interrupted", ["prompt_id": prompt.id, "node_id": "", "executed": []], to: prompt.clientID)
            } else if let failed = report.nodes.first(where: { $0.status == .failed }) {
                entry.status = "error"
                let id = EventReporter.comfyID(failed.name)
                entry.messages.append(StatusMessage("execution_error", node: id, error: failed.errors.joined(separator: "; ")))
                send("execution_error", ["prompt_id": prompt.id, "node_id": id, "node_type": failed.type,
                                         "exception_message": failed.errors.joined(separator: "; "), "exception_type": "sdflow.NodeError",
                                         "traceback": [], "current_inputs": [:], "current_outputs": [:]], to: prompt.clientID)
            } else {
                let success = StatusMessage("execution_success")
                entry.messages.append(success)
                send("execution_success", ["prompt_id": prompt.id, "timestamp": success.timestamp], to: prompt.clientID)
            }
        } catch {
            entry.status = "error"
            entry.messages.append(StatusMessage("execution_error", node: "", error: "\(error)"))
            send("execution_error", ["prompt_id": prompt.id, "node_id": "", "node_type": "", "exception_message": "\(error)",
                                     "exception_type": "sdflow.Error", "traceback": [], "current_inputs": [:], "current_outputs": [:]],
                 to: prompt.clientID)
        }
        send("executing", ["node": NSNull(), "prompt_id": prompt.id], to: prompt.clientID)
        models.endRun(keepingModelsOfLast: options.keepModelsOfLast)
        await queue.finish(entry)
        await broadcastStatus()
    }

    /// `body` on a thread of its own (a prompt computes for seconds to minutes; the server's
    /// threads and Swift's cooperative pool stay free).
    static func onThread<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: body()) }
            thread.stackSize = 16 << 20
            thread.start()
        }
    }

    func send(_ type: String, _ data: [String: Any], to clientID: String?) {
        eventSink.yield(Event(type: type, data: data, clientID: clientID))
    }

    func broadcastStatus() async {
        send("status", ["status": ["exec_info": ["queue_remaining": await queue.remaining]]], to: nil)
    }

    /// Sends events to the clients in order, for the server's life.
    func forwardEvents() async {
        for await event in events {
            if let preview = event.preview { await hub.sendPreview(preview, to: event.clientID) } else { await hub.send(event.type, event.data, to: event.clientID) }
        }
    }

    // MARK: - JSON

    func queueItem(_ prompt: QueuedPrompt) -> [Any] {
        let graph = (try? JSONSerialization.jsonObject(with: Data(prompt.graph.utf8))) ?? [:]
        return [prompt.number, prompt.id, graph, ["client_id": prompt.clientID ?? ""], prompt.outputs]
    }

    func historyItem(_ entry: HistoryEntry) -> [String: Any] {
        ["prompt": queueItem(entry.prompt),
         "outputs": entry.images.mapValues { ["images": $0.map(\.json)] },
         "status": ["status_str": entry.status, "completed": entry.status == "success",
                    "messages": entry.messages.map { $0.json(promptID: entry.prompt.id) }],
         "meta": Dictionary(uniqueKeysWithValues: entry.images.keys.map { ($0, ["node_id": $0, "display_node": $0]) })]
    }
}

/// Refuses requests without the server's token (`Authorization: Bearer T`, or `?token=T` for the WebSocket).
struct TokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let bearer = request.headers[.authorization].map { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : $0 }
        let query: String? = request.uri.queryParameters.get("token")
        guard bearer == token || query == token else {
            return Response(status: .unauthorized, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error": "a token is required"}"#)))
        }
        return try await next(request, context)
    }
}

/// A value handed to another thread that this one no longer touches. `@unchecked Sendable`: the
/// sender gives it up (a prompt's graph and options go to the thread that runs it).
struct Handover<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A JSON response of any JSON value.
func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func jsonArray(_ array: [Any]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: array)) ?? Data("[]".utf8)
    return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// A request's JSON object body (limited in size).
func jsonBody(_ request: Request, limit: Int = 100 << 20) async throws -> [String: Any] {
    var request = request
    let buffer = try await request.collectBody(upTo: limit)
    let data = Data(buffer.readableBytesView)
    guard !data.isEmpty else { return [:] }
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw HTTPError(.badRequest, message: "the body is not a JSON object")
    }
    return object
}
