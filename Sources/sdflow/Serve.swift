import ArgumentParser
import ComfyServer
import Foundation
import WorkflowEngine

/// `sdflow serve`: a ComfyUI-compatible server (HTTP and WebSocket API).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve ComfyUI's API, so that ComfyUI's clients run their prompts with sdflow.",
        discussion: """
            Prompts posted to /prompt (ComfyUI's API format) run one at a time with the models kept \
            loaded; progress and results go to the WebSocket /ws?clientId=ID, outputs to --output \
            (ComfyUI's names, prefix_00001_.png) and /history; /view serves them. Model files are \
            found in ComfyUI's layout under --models (checkpoints/, loras/, vae/), images under \
            --input. See docs/server.md.
            """)

    @Option(help: "The port.") var port = 8188
    @Option(help: "The address to listen on; any but 127.0.0.1 needs --token.") var listen = "127.0.0.1"
    @Option(help: "A token every request must carry (Authorization: Bearer TOKEN, or ?token=TOKEN).") var token: String?
    @Option(help: "Models in ComfyUI's layout (checkpoints/, loras/, vae/).") var models = "models"
    @Option(help: "Images prompts load.") var input = "input"
    @Option(help: "Where outputs are written.") var output = "output"
    @Option(help: "The cache folder (default: $XDG_CACHE_HOME/sdflow or ~/.cache/sdflow).") var cacheDir: String?
    @Flag(help: "Do not read or write the disk cache.") var noCache = false
    @Option(help: "Threads for numeric work (default: all cores).") var threads: Int?
    @Flag(help: "Fast mode (see sdflow run --help).") var fast = false
    @Option(help: "ComfyUI's web front end: the static folder of the comfyui-frontend-package Python package (docs/server.md).")
    var frontEnd: String?

    func run() async throws {
        let compute = Engine.withMeasuredKernels(try Engine.computeSettings(threads: threads, fast: fast), quiet: false)
        var options = ComfyServer.Options(folders: try Folders(models: models, input: input, output: output), compute: compute,
                                          cache: noCache ? nil : try ResultCache(folder: cacheDir ?? ResultCache.defaultFolder))
        (options.host, options.port, options.token) = (listen, port, token)
        if let frontEnd {
            guard FileManager.default.fileExists(atPath: frontEnd + "/index.html") else {
                throw ValidationError("--front-end \(frontEnd): no index.html there (give the package's static folder)")
            }
            options.frontEnd = frontEnd
        }
        let server: ComfyServer
        do { server = try ComfyServer(options: options, registry: try Engine.registry(pluginFolders: [])) } catch {
            throw ValidationError("\(error)")
        }
        FileHandle.standardError.write(Data("sdflow serves ComfyUI's API at http://\(listen):\(port)/ (models: \(models), input: \(input), output: \(output))\n".utf8))
        try await server.run()
    }
}
