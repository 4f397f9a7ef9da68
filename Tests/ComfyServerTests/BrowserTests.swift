import ComfyServer
import DiffusionNodes
import Foundation
import HummingbirdTesting
import HummingbirdWSClient
import ImageNodes
import Logging
import TestSupport
import Testing
import WorkflowEngine

/// ComfyUI's own web front end against `sdflow serve`, in a real (headless) Chromium: the editor
/// starts with sdflow's node library, a graph built in it is queued, and its output image arrives.
/// Needs `chromium` (scripts/install-deps.sh) and the front end (scripts/fetch-frontend.sh, which
/// scripts/test.sh runs and names in SDFLOW_FRONTEND); skipped with a message without them.
@Suite struct BrowserTests {
    static let frontEnd = ProcessInfo.processInfo.environment["SDFLOW_FRONTEND"].flatMap {
        FileManager.default.fileExists(atPath: $0 + "/index.html") ? $0 : nil
    }
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    let folder = TemporaryFolder()

    @Test(.enabled(if: frontEnd != nil && chromium != nil,
                   "needs chromium and ComfyUI's front end (SDFLOW_FRONTEND, from scripts/fetch-frontend.sh); scripts/test.sh provides both"))
    func theComfyUIEditorQueuesAPromptAndShowsTheResult() async throws {
        let models = folder.file("models")
        try FileManager.default.createDirectory(atPath: models + "/checkpoints", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TinyModel.folder, toPath: models + "/checkpoints/tiny")
        var options = ComfyServer.Options(folders: try Folders(models: models, input: folder.file("input"), output: folder.file("output")))
        (options.port, options.frontEnd) = (0, Self.frontEnd)
        var registry = NodeRegistry()
        try registry.register(ImageNodes.pack)
        try registry.register(DiffusionNodes.pack)
        let server = try ComfyServer(options: options, registry: registry)
        let worker = Task { await server.runWorker() }
        defer { worker.cancel() }

        // Chromium with its DevTools protocol on a port it chooses (written to DevToolsActivePort).
        let profile = folder.file("chromium")
        let browser = Process()
        browser.executableURL = URL(fileURLWithPath: try #require(Self.chromium))
        browser.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "--remote-allow-origins=*", "--disable-dev-shm-usage", "--user-data-dir=\(profile)",
                             "about:blank"]
        browser.standardError = FileHandle.nullDevice
        browser.standardOutput = FileHandle.nullDevice
        try browser.run()
        defer { browser.terminate() }
        var devTools: String?
        for _ in 0..<300 where devTools == nil {
            if let text = try? String(contentsOfFile: profile + "/DevToolsActivePort", encoding: .utf8) {
                let lines = text.split(separator: "\n")
                if lines.count >= 2 { devTools = "ws://127.0.0.1:\(lines[0])\(lines[1])" }
            }
            if devTools == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let url = try #require(devTools, "Chromium did not start its DevTools server")

        let results = try await server.application().test(.live) { client in
            let page = "http://127.0.0.1:\(try #require(client.port))/"
            let collected = ResultBox()
            try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 1 << 24), logger: Logger(label: "cdp")) { inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 24).makeAsyncIterator()
                var next = 0
                /// One DevTools call and its result.
                func call(_ method: String, _ params: [String: Any], session: String? = nil) async throws -> [String: Any] {
                    next += 1
                    var message: [String: Any] = ["id": next, "method": method, "params": params]
                    if let session { message["sessionId"] = session }
                    try await outbound.write(.text(String(decoding: try JSONSerialization.data(withJSONObject: message), as: UTF8.self)))
                    while let reply = try await messages.next() {
                        guard case .text(let text) = reply,
                              let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                              object["id"] as? Int == next else { continue }
                        return object["result"] as? [String: Any] ?? ["error": object["error"] ?? "no result"]
                    }
                    return [:]
                }
                let target = try await call("Target.createTarget", ["url": page])["targetId"] as? String ?? ""
                let session = try await call("Target.attachToTarget", ["targetId": target, "flatten": true])["sessionId"] as? String
                /// The value of a JavaScript expression in the page (promises awaited).
                func evaluate(_ expression: String) async throws -> Any? {
                    let result = try await call("Runtime.evaluate", ["expression": expression, "awaitPromise": true, "returnByValue": true],
                                                session: session)
                    if let exception = result["exceptionDetails"] as? [String: Any] { return "exception: \(exception)" }
                    return (result["result"] as? [String: Any])?["value"]
                }
                var started = false
                for _ in 0..<120 where !started {
                    started = try await evaluate("!!(window.app && window.app.graph && window.app.canvas && window.LiteGraph)") as? Bool == true
                    if !started { try await Task.sleep(for: .milliseconds(500)) }
                }
                collected.set("started", started)
                collected.set("library", try await evaluate("['KSampler', 'SaveImage', 'resize_image', 'denoise'].every(t => !!LiteGraph.registered_node_types[t])"))
                // The default text-to-image graph, built in the editor as a user would, at 64x64 and 3 steps.
                collected.set("built", try await evaluate("""
                    (async () => {
                      const g = window.app.graph; g.clear();
                      const make = (type) => { const n = LiteGraph.createNode(type); g.add(n); return n; };
                      const set = (n, name, value) => { n.widgets.find(w => w.name === name).value = value; };
                      const link = (a, output, b, name) => a.connect(output, b, b.inputs.findIndex(i => i.name === name));
                      const model = make('CheckpointLoaderSimple'), positive = make('CLIPTextEncode'), negative = make('CLIPTextEncode'),
                            latent = make('EmptyLatentImage'), sampler = make('KSampler'), decode = make('VAEDecode'), save = make('SaveImage');
                      set(model, 'ckpt_name', 'tiny'); set(positive, 'text', 'a red circle on a white background'); set(negative, 'text', '');
                      set(latent, 'width', 64); set(latent, 'height', 64); set(sampler, 'steps', 3); set(sampler, 'seed', 42);
                      link(model, 0, sampler, 'model'); link(model, 1, positive, 'clip'); link(model, 1, negative, 'clip');
                      link(positive, 0, sampler, 'positive'); link(negative, 0, sampler, 'negative'); link(latent, 0, sampler, 'latent_image');
                      link(sampler, 0, decode, 'samples'); link(model, 2, decode, 'vae'); link(decode, 0, save, 'images');
                      await window.app.queuePrompt(0, 1);
                      return g._nodes.length;
                    })()
                    """))
                var outputs = ""
                for _ in 0..<600 where !outputs.contains("ComfyUI_00001_.png") {  // up to 5 minutes on a busy machine
                    outputs = try await evaluate("JSON.stringify(window.app.nodeOutputs || {})") as? String ?? ""
                    if !outputs.contains("ComfyUI_00001_.png") { try await Task.sleep(for: .milliseconds(500)) }
                }
                collected.set("outputs", outputs)
                collected.set("viewStatus", try await evaluate("fetch('/api/view?filename=ComfyUI_00001_.png&type=output&subfolder=').then(r => r.status)"))
            }
            return collected.values
        }
        #expect(results["started"] as? Bool == true, "the editor did not start: \(results)")
        #expect(results["library"] as? Bool == true, "sdflow's node library is not in the editor: \(results)")
        #expect(results["built"] as? Int == 7, "\(results)")
        #expect((results["outputs"] as? String ?? "").contains("ComfyUI_00001_.png"), "no output image reached the editor: \(results)")
        #expect(results["viewStatus"] as? Int == 200)
        #expect(FileManager.default.fileExists(atPath: folder.file("output/ComfyUI_00001_.png")))
    }
}

/// Values collected inside the DevTools session. `@unchecked Sendable`: written by the session's one
/// task, read after it ended.
final class ResultBox: @unchecked Sendable {
    private(set) var values: [String: Any] = [:]
    func set(_ key: String, _ value: Any?) { values[key] = value ?? NSNull() }
}
