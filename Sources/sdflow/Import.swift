import ArgumentParser
import Foundation
import ImageIO
import TensorCore
import WorkflowEngine

/// `sdflow import`: an sdflow workflow from the AUTOMATIC1111 parameters an image carries, or
/// from a ComfyUI workflow exported for API.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Write an sdflow workflow equivalent to an image's AUTOMATIC1111 parameters or a ComfyUI API workflow.",
        discussion: """
            Reads the parameters text of a PNG, or the EXIF UserComment of a JPEG or WebP: prompt,
            negative prompt, steps, sampler, CFG scale, seed, size, denoising strength, clip skip and
            <lora:name:weight> tags. Settings it cannot map are listed on standard error and as
            comments in the workflow. `sdflow run IMAGE --set checkpoint=PATH` runs such an image
            directly. A ComfyUI workflow exported for API (workflow_api.json) is converted node by
            node (`sdflow run workflow_api.json` runs it directly); its model and image files become
            parameters to set.
            """)

    @Argument(help: "A PNG, JPEG or WebP written by AUTOMATIC1111 (or a tool that writes its parameters), or a ComfyUI API workflow (.json).")
    var image: String

    @Option(name: .shortAndLong, help: "Write the workflow to this file instead of standard output.")
    var output: String?

    func run() throws {
        guard let data = FileManager.default.contents(atPath: image) else { throw ValidationError("\(image): no such file") }
        if ComfyImport.recognises(data) {
            let imported: ComfyImport
            do { imported = try ComfyImport(json: data, source: URL(fileURLWithPath: image).lastPathComponent) } catch {
                FileHandle.standardError.write(Data("error: \(image): \(error)\n".utf8))
                throw ExitCode(1)
            }
            FileHandle.standardError.write(Data(imported.notes.map { "note: \($0)\n" }.joined().utf8))
            return try write(imported.yaml)
        }
        let text = ExifText.userComment(data) ?? (try? ImageFile.decode(data, name: image))?.metadata["parameters"]
        guard let text, let parameters = A1111Parameters(text: text) else {
            FileHandle.standardError.write(Data("error: \(image): no AUTOMATIC1111 parameters (a PNG 'parameters' text or an EXIF UserComment with a 'Steps: ...' line)\n".utf8))
            throw ExitCode(1)
        }
        let imported = A1111Import(parameters, source: URL(fileURLWithPath: image).lastPathComponent)
        FileHandle.standardError.write(Data(imported.notes.map { "note: \($0)\n" }.joined().utf8))
        try write(imported.yaml)
    }

    /// The workflow to `--output` or standard output.
    private func write(_ yaml: String) throws {
        if let output {
            try AtomicFile.write(Data(yaml.utf8), to: output)
        } else {
            print(yaml, terminator: "")
        }
    }
}
