import Foundation
import Hummingbird
import HummingbirdWebSocket
import TensorCore

/// The routes ComfyUI's web front end calls besides the API proper: the user (one, "default"),
/// its settings and saved workflows (in the user folder), and empty answers for what sdflow does not
/// have (translations, templates, subgraphs, the model library), so that the page starts cleanly.
extension ComfyServer {
    func editorRoutes(_ router: Router<BasicWebSocketRequestContext>, prefix: String) {
        router.get("\(prefix)/users") { _, _ in json(["storage": "server", "migrated": true]) }
        router.get("\(prefix)/settings") { [self] _, _ in json(settings()) }
        router.post("\(prefix)/settings") { [self] request, _ in
            try saveSettings(settings().merging(try await jsonBody(request, limit: options.maxBody)) { _, new in new })
            return Response(status: .ok)
        }
        router.get("\(prefix)/settings/:id") { [self] _, context in
            return jsonValue(settings()[context.parameters.get("id") ?? ""] ?? NSNull())
        }
        router.post("\(prefix)/settings/:id") { [self] request, context in
            var request = request
            let data = Data(try await request.collectBody(upTo: options.maxBody).readableBytesView)
            var all = settings()
            all[context.parameters.get("id") ?? ""] = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            try saveSettings(all)
            return Response(status: .ok)
        }
        router.get("\(prefix)/userdata") { [self] request, _ in
            let dir = request.uri.queryParameters.get("dir") ?? ""
            guard let folder = try? options.folders.path("user", dir, mustExist: true),
                  let names = FileManager.default.subpaths(atPath: folder) else { return json([:], status: .notFound) }
            return jsonArray(names.filter { $0.hasSuffix(".json") }.sorted())
        }
        router.get("\(prefix)/userdata/:file") { [self] _, context in
            guard let name = context.parameters.get("file")?.removingPercentEncoding,
                  let path = try? options.folders.path("user", name), let data = FileManager.default.contents(atPath: path) else {
                return json(["error": "not found"], status: .notFound)
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.post("\(prefix)/userdata/:file") { [self] request, context in
            var request = request
            guard let name = context.parameters.get("file")?.removingPercentEncoding,
                  let path = try? options.folders.path("user", name, mustExist: false) else { return json(["error": "bad file name"], status: .badRequest) }
            let data = Data(try await request.collectBody(upTo: options.maxBody).readableBytesView)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(data, to: path)
            return jsonValue(name)
        }
        router.get("\(prefix)/i18n") { _, _ in json([:]) }
        router.get("\(prefix)/features") { [self] _, _ in json(ClientHub.featureFlags.merging(["max_upload_size": options.maxBody]) { a, _ in a }) }
        router.get("\(prefix)/workflow_templates") { _, _ in json([:]) }
        router.get("\(prefix)/global_subgraphs") { _, _ in json([:]) }
        router.get("\(prefix)/experiment/models") { _, _ in jsonArray([]) }
        if prefix.isEmpty { router.get("/internal/folder_paths") { _, _ in json([:]) } }  // not under /api
    }

    /// The editor's settings (`comfy.settings.json` in the user folder).
    func settings() -> [String: Any] {
        guard let path = try? options.folders.path("user", "comfy.settings.json"), let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object
    }

    func saveSettings(_ settings: [String: Any]) throws {
        let path = try options.folders.path("user", "comfy.settings.json", mustExist: false)
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys, .prettyPrinted]), to: path)
    }

    /// `/` without the front end: the queue, the running prompt, and the latest results with thumbnails.
    func statusPage() async throws -> Response {
        let remaining = await queue.remaining, running = await queue.running?.id
        let recent = await queue.history.suffix(24).reversed()
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        var html = """
            <!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>sdflow serve</title>
            <style>body{font-family:sans-serif;margin:2em}img{height:128px;margin:4px}li{margin:.5em 0}</style></head><body>
            <h1>sdflow serve</h1><p>ComfyUI's API at this address (POST /prompt, WS /ws). Queue: \(remaining) prompt(s)\
            \(running.map { ", running \(escape($0))" } ?? "").</p><h2>Latest results</h2><ul>
            """
        for entry in recent {
            let id = entry.prompt.id
            let images = entry.images.values.flatMap { $0 }.map { image in
                let query = "filename=\(image.filename.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? "")&subfolder=\(image.subfolder.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? "")&type=\(image.type)"
                return "<a href=\"/view?\(query)\"><img src=\"/view?\(query)\" alt=\"\(escape(image.filename))\"></a>"
            }.joined()
            html += "<li>\(escape(id)): \(escape(entry.status)) \(images)</li>"
        }
        html += "</ul></body></html>"
        return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}

/// A JSON response of one value (a string, number, or `null`).
func jsonValue(_ value: Any) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])) ?? Data("null".utf8)
    return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
