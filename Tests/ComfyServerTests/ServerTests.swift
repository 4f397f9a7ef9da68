import ComfyServer
import DiffusionNodes
import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWSClient
import ImageIO
import ImageNodes
import Logging
import Synchronization
import TestSupport
import Testing
import WorkflowEngine

/// `sdflow serve` as ComfyUI's clients use it: a prompt posted, its progress on the WebSocket, its
/// result in the history and from /view; bad input answered in ComfyUI's shape; paths confined.
@Suite(.serialized) struct ServerTests {
    let folder = TemporaryFolder()

    /// A server over temporary folders with the tiny model as `checkpoints/tiny`.
    func makeServer(token: String? = nil, host: String = "127.0.0.1") throws -> ComfyServer {
        let models = folder.file("models")
        try FileManager.default.createDirectory(atPath: models + "/checkpoints", withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: models + "/checkpoints/tiny") {
            try FileManager.default.copyItem(atPath: TinyModel.folder, toPath: models + "/checkpoints/tiny")
        }
        var options = ComfyServer.Options(folders: try Folders(models: models, input: folder.file("input"), output: folder.file("output")),
                                          cache: try ResultCache(folder: folder.file("cache")))
        (options.host, options.port, options.token) = (host, 0, token)
        var registry = NodeRegistry()
        try registry.register(ImageNodes.pack)
        try registry.register(DiffusionNodes.pack)
        return try ComfyServer(options: options, registry: registry)
    }

    /// ComfyUI's default graph on the tiny model.
    func prompt(seed: Int = 42) throws -> [String: Any] {
        var graph = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("comfy/txt2img_api.json")))) as! [String: Any]
        var loader = graph["4"] as! [String: Any]
        loader["inputs"] = ["ckpt_name": "tiny"]
        graph["4"] = loader
        var sampler = graph["3"] as! [String: Any], inputs = sampler["inputs"] as! [String: Any]
        inputs["seed"] = seed
        sampler["inputs"] = inputs
        graph["3"] = sampler
        return graph
    }

    static func body(_ object: Any) throws -> ByteBuffer { ByteBuffer(data: try JSONSerialization.data(withJSONObject: object)) }
    static func object(_ buffer: ByteBuffer) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any]) ?? [:] }

    /// Polls the history until the prompt is there.
    static func waitForHistory(_ client: some TestClientProtocol, _ id: String) async throws -> [String: Any] {
        for _ in 0..<600 {
            let history = object(try await client.execute(uri: "/history/\(id)", method: .get).body)
            if let entry = history[id] as? [String: Any] { return entry }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("prompt \(id) did not finish")
        return [:]
    }

    @Test func aPromptRunsAndReportsOverTheWebSocket() async throws {
        let server = try makeServer()
        let worker = Task { await server.runWorker() }
        defer { worker.cancel() }
        let graphData = try JSONSerialization.data(withJSONObject: prompt()), secondFile = folder.file("output/ComfyUI_00002_.png")
        try await server.application().test(.live) { client in
            let graph = try JSONSerialization.jsonObject(with: graphData)
            let port = try #require(client.port)
            // A WebSocket client collecting the message types it receives.
            let received = Mutex<[String]>([]), cached = Mutex<[[String]]>([])
            let socket = Task {
                try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/ws?clientId=tester", logger: Logger(label: "test")) { inbound, _, _ in
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .binary(let frame) = message {
                            // ComfyUI's preview frame: event 1, PNG (2), then the image.
                            let head = Array(frame.readableBytesView.prefix(12))
                            if head.prefix(8) == [0, 0, 0, 1, 0, 0, 0, 2] && head.dropFirst(8) == [0x89, 0x50, 0x4E, 0x47] {
                                received.withLock { $0.append("preview") }
                            }
                        }
                        guard case .text(let text) = message,
                              let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                              let type = object["type"] as? String else { continue }
                        received.withLock { $0.append(type) }
                        if type == "execution_cached", let nodes = (object["data"] as? [String: Any])?["nodes"] as? [String] {
                            cached.withLock { $0.append(nodes) }
                        }
                    }
                }
            }
            defer { socket.cancel() }
            // A second socket of the client that asks for previews with metadata (ComfyUI's feature flags).
            let flagged = Mutex<[String]>([])
            let metadataSocket = Task {
                try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/ws?clientId=tester", logger: Logger(label: "test")) { inbound, outbound, _ in
                    try await outbound.write(.text(#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#))
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .text(let text) = message, text.contains("\"feature_flags\"") { flagged.withLock { $0.append("feature_flags") } }
                        // Event 4: the metadata's length and JSON, then the PNG.
                        guard case .binary(var frame) = message, frame.readInteger(as: UInt32.self) == 4,
                              let length = frame.readInteger(as: UInt32.self), let json = frame.readData(length: Int(length)),
                              let metadata = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
                              Array(frame.readableBytesView.prefix(4)) == [0x89, 0x50, 0x4E, 0x47] else { continue }
                        if metadata["node_id"] as? String == "3" && metadata["image_type"] as? String == "image/png" && metadata["prompt_id"] is String {
                            flagged.withLock { $0.append("preview with metadata") }
                        }
                    }
                }
            }
            defer { metadataSocket.cancel() }
            try await Task.sleep(for: .milliseconds(300))

            let started = Date()
            let reply = try await client.execute(uri: "/prompt", method: .post, body: Self.body(["prompt": graph, "client_id": "tester"]))
            #expect(reply.status == .ok)
            let id = try #require(Self.object(reply.body)["prompt_id"] as? String)
            let entry = try await Self.waitForHistory(client, id)
            let first = Date().timeIntervalSince(started)
            let status = try #require(entry["status"] as? [String: Any])
            #expect(status["status_str"] as? String == "success")
            // ComfyUI's status messages, with times.
            let messages = try #require(status["messages"] as? [[Any]])
            #expect(messages.compactMap { $0.first as? String } == ["execution_start", "execution_success"], "\(messages)")
            #expect(messages.allSatisfy { (($0.last as? [String: Any])?["timestamp"] as? Int ?? 0) > 1_700_000_000_000 })
            let images = try #require(((entry["outputs"] as? [String: Any])?["9"] as? [String: Any])?["images"] as? [[String: Any]])
            #expect(images.first?["filename"] as? String == "ComfyUI_00001_.png" && images.first?["type"] as? String == "output")

            // The image from /view (also under /api/).
            let view = try await client.execute(uri: "/api/view?filename=ComfyUI_00001_.png&type=output&subfolder=", method: .get)
            #expect(view.status == .ok && view.headers[.contentType] == "image/png")
            let image = try ImageFile.decode(Data(view.body.readableBytesView), name: "view.png")
            #expect(image.width == 64 && image.height == 64)

            // The same prompt again: models loaded, results cached; a new file.
            let again = Date()
            let second = try await client.execute(uri: "/prompt", method: .post, body: Self.body(["prompt": graph, "client_id": "tester"]))
            let secondID = try #require(Self.object(second.body)["prompt_id"] as? String)
            _ = try await Self.waitForHistory(client, secondID)
            let repeated = Date().timeIntervalSince(again)
            print("server: first prompt \(first) s, the same again \(repeated) s (\(Int(100 * repeated / first))%)")
            #expect(FileManager.default.fileExists(atPath: secondFile))

            try await Task.sleep(for: .milliseconds(300))
            let types = received.withLock { $0 } + flagged.withLock { $0 }
            for expected in ["status", "execution_start", "executing", "progress", "preview", "preview with metadata", "feature_flags",
                             "executed", "execution_cached", "execution_success"] {
                #expect(types.contains(expected), "no \(expected) message in \(types)")
            }
            // The same prompt again runs only the loader (which finds its model still loaded) and the
            // save; the rest comes from the cache.
            #expect(cached.withLock { $0.last } == ["3", "5", "6", "7", "8"], "\(cached.withLock { $0 })")
            let queue = Self.object(try await client.execute(uri: "/queue", method: .get).body)
            #expect((queue["queue_pending"] as? [Any])?.isEmpty == true && (queue["queue_running"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func badInputGetsComfyUIShapedErrorsAndTheServerGoesOn() async throws {
        let server = try makeServer()
        let worker = Task { await server.runWorker() }
        defer { worker.cancel() }
        let originalData = try JSONSerialization.data(withJSONObject: prompt())
        try await server.application().test(.router) { client in
            let original = try #require(try JSONSerialization.jsonObject(with: originalData) as? [String: Any])
            func post(_ body: ByteBuffer) async throws -> (HTTPResponse.Status, [String: Any]) {
                let response = try await client.execute(uri: "/prompt", method: .post, body: body)
                return (response.status, Self.object(response.body))
            }
            var graph = original
            let (invalid, invalidBody) = try await post(ByteBuffer(string: "{not json"))
            #expect(invalid == .badRequest && (invalidBody["error"] as? [String: Any])?["type"] as? String == "invalid_prompt")
            let (none, noneBody) = try await post(try Self.body(["client_id": "x"]))
            #expect(none == .badRequest && (noneBody["error"] as? [String: Any])?["type"] as? String == "no_prompt")
            graph["8"] = ["class_type": "VAEDecode", "inputs": ["samples": ["77", 0], "vae": ["4", 2]]]
            let (badLink, badLinkBody) = try await post(try Self.body(["prompt": graph]))
            let nodeErrors = try #require(badLinkBody["node_errors"] as? [String: Any])
            #expect(badLink == .badRequest && nodeErrors["8"] != nil, "\(badLinkBody)")
            graph = original
            graph["4"] = ["class_type": "CheckpointLoaderSimple", "inputs": ["ckpt_name": "../../etc/passwd"]]
            let (escape, escapeBody) = try await post(try Self.body(["prompt": graph]))
            #expect(escape == .badRequest && "\(escapeBody)".contains("not a name inside the checkpoints folder"))
            graph = original
            graph.removeValue(forKey: "9")
            let (noOutputs, noOutputsBody) = try await post(try Self.body(["prompt": graph]))
            #expect(noOutputs == .badRequest && (noOutputsBody["error"] as? [String: Any])?["type"] as? String == "prompt_no_outputs")
            // Still serving.
            let stats = try await client.execute(uri: "/system_stats", method: .get)
            #expect(stats.status == .ok)
            let info = Self.object(try await client.execute(uri: "/object_info", method: .get).body)
            // ComfyUI's classes sdflow maps, and sdflow's own nodes except those that write files of their own choosing.
            #expect(Set(ComfyImport.supportedClasses).isSubset(of: info.keys) && info["save_image"] == nil)
            let resize = try #require(info["resize_image"] as? [String: Any])
            #expect(resize["category"] as? String == "sdflow/images" && resize["output"] as? [String] == ["IMAGE"])
            let required = try #require((resize["input"] as? [String: Any])?["required"] as? [String: Any])
            #expect(required["image"] as? [String] == ["IMAGE"] && required["width"] != nil)
        }
    }

    /// 50 prompts from 5 clients at once: every one runs, each writes its own file, nothing is lost,
    /// and the resident memory does not grow with the number of prompts.
    @Test func fiftyPromptsFromFiveClientsAllComplete() async throws {
        let server = try makeServer()
        let worker = Task { await server.runWorker() }
        defer { worker.cancel() }
        let graphs = try (0..<5).map { try JSONSerialization.data(withJSONObject: prompt(seed: $0)) }
        let output = folder.file("output")
        try await server.application().test(.router) { client in
            /// `count` prompts of one client, one after another.
            func submit(_ number: Int, _ count: Int) async throws -> [String] {
                var ids: [String] = []
                for _ in 0..<count {
                    let graph = try JSONSerialization.jsonObject(with: graphs[number])
                    let reply = try await client.execute(uri: "/prompt", method: .post, body: Self.body(["prompt": graph, "client_id": "c\(number)"]))
                    ids.append(try #require(Self.object(reply.body)["prompt_id"] as? String))
                }
                return ids
            }
            // A first round warms up (models loaded, each seed computed once), then the memory is read.
            let warm = try await withThrowingTaskGroup(of: [String].self) { group in
                for c in 0..<5 { group.addTask { try await submit(c, 2) } }
                return try await group.reduce([], +)
            }
            for id in warm { _ = try await Self.waitForHistory(client, id) }
            let before = Self.residentBytes()
            let rest = try await withThrowingTaskGroup(of: [String].self) { group in
                for c in 0..<5 { group.addTask { try await submit(c, 8) } }
                return try await group.reduce([], +)
            }
            for id in rest {
                let entry = try await Self.waitForHistory(client, id)
                #expect((entry["status"] as? [String: Any])?["status_str"] as? String == "success")
            }
            let after = Self.residentBytes()
            print("server: 40 prompts after warming up, resident \(before / 1_000_000) MB -> \(after / 1_000_000) MB")
            #expect(Set(warm + rest).count == 50)
            let files = try FileManager.default.contentsOfDirectory(atPath: output).filter { $0.hasPrefix("ComfyUI_") }
            #expect(files.count == 50)
            // Loose: other suites run in this process at the same time and allocate too.
            #expect(after < before + 400_000_000)
        }
    }

    /// `POST /interrupt` stops the running prompt at a sampler step; the queue goes on; a restarted
    /// server keeps the history.
    @Test func anInterruptStopsThePromptAndTheQueueGoesOn() async throws {
        let server = try makeServer()
        let worker = Task { await server.runWorker() }
        defer { worker.cancel() }
        var long = try prompt(seed: 9)
        var sampler = long["3"] as! [String: Any], inputs = sampler["inputs"] as! [String: Any]
        inputs["steps"] = 1000
        sampler["inputs"] = inputs
        long["3"] = sampler
        let longData = try JSONSerialization.data(withJSONObject: long), shortData = try JSONSerialization.data(withJSONObject: prompt(seed: 3))
        let finished = Mutex<[String]>([])
        try await server.application().test(.router) { client in
            let first = try await client.execute(uri: "/prompt", method: .post,
                                                 body: Self.body(["prompt": try JSONSerialization.jsonObject(with: longData)]))
            let second = try await client.execute(uri: "/prompt", method: .post,
                                                  body: Self.body(["prompt": try JSONSerialization.jsonObject(with: shortData)]))
            try await Task.sleep(for: .seconds(2))
            _ = try await client.execute(uri: "/interrupt", method: .post)
            let stopped = try await Self.waitForHistory(client, try #require(Self.object(first.body)["prompt_id"] as? String))
            #expect((stopped["status"] as? [String: Any])?["status_str"] as? String == "error")
            let next = try await Self.waitForHistory(client, try #require(Self.object(second.body)["prompt_id"] as? String))
            #expect((next["status"] as? [String: Any])?["status_str"] as? String == "success")
            let ids = [try #require(Self.object(first.body)["prompt_id"] as? String), try #require(Self.object(second.body)["prompt_id"] as? String)]
            finished.withLock { $0 = ids }
        }
        let ids = finished.withLock { $0 }
        try #require(ids.count == 2)
        // A line cut short (a crash mid-write) is skipped; the entries before it stay.
        let historyFile = folder.file("user/sdflow-history.jsonl")
        let handle = try #require(FileHandle(forWritingAtPath: historyFile))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"prompt": {"number": 7, "id": "cut"#.utf8))
        try handle.close()
        // A restarted server still lists what the first one finished, and numbers on from it.
        let restarted = try makeServer()
        try await restarted.application().test(.router) { client in
            let history = Self.object(try await client.execute(uri: "/history", method: .get).body)
            #expect(Set(history.keys) == Set(ids), "\(history.keys)")
            let entry = try #require(history[ids[1]] as? [String: Any])
            #expect((entry["status"] as? [String: Any])?["status_str"] as? String == "success")
            #expect((entry["outputs"] as? [String: Any])?["9"] != nil)
            let reply = try await client.execute(uri: "/prompt", method: .post, body: Self.body(["prompt": try JSONSerialization.jsonObject(with: shortData)]))
            #expect(Self.object(reply.body)["number"] as? Int == 2)
        }
        // An entry finished after the cut line reads back too.
        let restartedWorker = Task { await restarted.runWorker() }
        defer { restartedWorker.cancel() }
        let third = Mutex<String?>(nil)
        try await restarted.application().test(.router) { client in
            let reply = try await client.execute(uri: "/prompt", method: .post, body: Self.body(["prompt": try JSONSerialization.jsonObject(with: shortData)]))
            let id = try #require(Self.object(reply.body)["prompt_id"] as? String)
            _ = try await Self.waitForHistory(client, id)
            third.withLock { $0 = id }
        }
        let thirdID = try #require(third.withLock { $0 })
        let again = try makeServer()
        try await again.application().test(.router) { client in
            // Both prompts finished after the cut line (the one queued before the worker started ran too) read back.
            let history = Self.object(try await client.execute(uri: "/history", method: .get).body)
            #expect(history.count == 4 && history[ids[0]] != nil && history[ids[1]] != nil && history[thirdID] != nil, "\(history.keys)")
            _ = try await client.execute(uri: "/history", method: .post, body: Self.body(["delete": [ids[0]]]))
        }
        let last = try makeServer()
        try await last.application().test(.router) { client in
            let history = Self.object(try await client.execute(uri: "/history", method: .get).body)
            #expect(history.count == 3 && history[ids[0]] == nil, "\(history.keys)")
        }
    }

    /// VmRSS from /proc/self/status.
    static func residentBytes() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
    }

    /// A multipart/form-data body of text fields and one file.
    static func form(_ fields: [(String, String)], file: (name: String, data: Data)?, boundary: String = "sdflowBoundary42") -> ByteBuffer {
        var body = Data()
        for (name, value) in fields {
            body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        if let file {
            body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\(file.name)\"\r\nContent-Type: image/png\r\n\r\n".utf8)
            body += file.data + Data("\r\n".utf8)
        }
        body += Data("--\(boundary)--\r\n".utf8)
        return ByteBuffer(data: body)
    }

    /// The editor's uploads: an image into the input folder (a taken name gets " (1)"), a mask painted
    /// on it as the image's alpha; a file that is no image, or a folder out of bounds, is refused.
    @Test func uploadsGoIntoTheInputFolder() async throws {
        let server = try makeServer()
        var photo = Image(width: 8, height: 6, channels: 3, value: 0.5)
        photo.pixels.mutablePointer()[0] = 1
        let png = try ImageFile.encodePNG(photo)
        var painted = Image(width: 8, height: 6, channels: 4)
        for i in (3 * 48)..<(3 * 48 + 24) { painted.pixels.mutablePointer()[i] = 1 }  // the top half's alpha
        let mask = try ImageFile.encodePNG(painted)
        let input = folder.file("input")
        try await server.application().test(.router) { client in
            let headers: HTTPFields = [.contentType: "multipart/form-data; boundary=sdflowBoundary42"]
            func upload(_ route: String, _ fields: [(String, String)], _ file: (String, Data)?) async throws -> (HTTPResponse.Status, [String: Any]) {
                let response = try await client.execute(uri: route, method: .post, headers: headers, body: Self.form(fields, file: file.map { (name: $0.0, data: $0.1) }))
                return (response.status, Self.object(response.body))
            }
            let (first, firstBody) = try await upload("/upload/image", [("type", "input")], ("photo.png", png))
            #expect(first == .ok && firstBody["name"] as? String == "photo.png" && firstBody["type"] as? String == "input")
            let (_, again) = try await upload("/api/upload/image", [], ("photo.png", png))
            #expect(again["name"] as? String == "photo (1).png")
            let (_, replaced) = try await upload("/upload/image", [("overwrite", "true")], ("photo.png", png))
            #expect(replaced["name"] as? String == "photo.png")
            let (notImage, notImageBody) = try await upload("/upload/image", [], ("notes.png", Data("hello".utf8)))
            #expect(notImage == .badRequest && "\(notImageBody)".contains("not an image"))
            let (escape, _) = try await upload("/upload/image", [("subfolder", "../../etc")], ("photo.png", png))
            #expect(escape == .badRequest)
            let (masked, maskedBody) = try await upload("/upload/mask", [("original_ref", #"{"filename": "photo.png", "subfolder": "", "type": "input"}"#)],
                                                        ("clipspace-mask.png", mask))
            #expect(masked == .ok, "\(maskedBody)")
            let composed = try ImageFile.read(input + "/clipspace-mask.png")
            #expect(composed.channels == 4 && composed.pixels.pointer[0] == 1)
            #expect(composed.pixels.pointer[3 * 48] == 1 && composed.pixels.pointer[3 * 48 + 47] == 0)
        }
        #expect(FileManager.default.fileExists(atPath: input + "/photo (1).png"))
    }

    @Test func filesOutsideTheFoldersAreNotServed() async throws {
        let server = try makeServer()
        try FileManager.default.createDirectory(atPath: folder.file("output"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder.file("output/outside.png"), withDestinationPath: "/etc/hostname")
        try Data("secret".utf8).write(to: URL(fileURLWithPath: folder.file("secret.png")))
        try await server.application().test(.router) { client in
            for uri in ["/view?filename=../secret.png&type=output", "/view?filename=/etc/hostname&type=output",
                        "/view?filename=outside.png&type=output", "/view?filename=secret.png&type=output&subfolder=..",
                        "/view?filename=x.png&type=../models", "/view?filename=tiny/model_index.json&type=checkpoints"] {
                let response = try await client.execute(uri: uri, method: .get)
                #expect(response.status == .notFound, "\(uri) was served")
            }
        }
    }

    @Test func otherAddressesNeedAToken() async throws {
        #expect(throws: ComfyServer.ConfigurationError.self) { try makeServer(host: "0.0.0.0") }
        let server = try makeServer(token: "s3cret", host: "0.0.0.0")
        try await server.application().test(.router) { client in
            let statuses = [try await client.execute(uri: "/queue", method: .get).status,
                            try await client.execute(uri: "/queue?token=wrong", method: .get).status,
                            try await client.execute(uri: "/queue", method: .get, headers: [.authorization: "Bearer s3cret"]).status,
                            try await client.execute(uri: "/api/queue?token=s3cret", method: .get).status]
            #expect(statuses == [.unauthorized, .unauthorized, .ok, .ok])
        }
    }
}
