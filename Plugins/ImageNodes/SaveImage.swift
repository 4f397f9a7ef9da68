import Foundation
import ImageIO
import NodeKit

/// `save_image`: writes PNG or JPEG files, with the workflow and its resolved parameters in
/// PNG text chunks (and an A1111-style `parameters` chunk), so the image documents itself and
/// `sdflow run IMAGE.png` can run its workflow again. A file that already exists with the same
/// cache key is up to date and left as it is (the engine asks before computing the inputs), so
/// an interrupted batch resumes where it stopped; the image a rerun was read from is never replaced.
struct SaveImage: FileWritingNode {
    static let path = Param<String>("path", .outputPath,
        help: "where to write; may use {stem} (source file name), {index}, {seed} and {node}, e.g. out/{stem}-{seed}.png; {index:04} pads")
    static let bits = Param<String>("bits", .choice(["auto", "8", "16"]), default: "auto",
        help: "PNG bits per sample (auto: 16 for 16-bit sources)")
    static let quality = Param<Int>("quality", .integer(1...100), default: 95, help: "JPEG quality")
    static let metadata = Param<Bool>("metadata", .boolean, default: true, help: "write the workflow and parameters into PNG text chunks")
    static let description = NodeDescription(
        name: "save_image", summary: "Save an image as PNG or JPEG (by the path's extension), with the workflow in its metadata.",
        inputs: [.init("image", .image, help: "the image to save"),
                 .init("source", .image, optional: true,
                       help: "the photo the image was made from: its ICC colour profile and EXIF go into the file (when the image has none of its own)")],
        parameters: [path, bits, quality, metadata],
        isOutput: true, alwaysRuns: true)

    static func run(_ context: NodeContext) throws -> [String: Value] {
        var image = try context.image("image")
        if image.embedded.isEmpty, let source = context.input("source")?.imageValue { image.embedded = source.embedded }
        let info = context.runInfo
        let path = try PathTemplate.outputPath(try context[Self.path], context: context)
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // A changed rerun of a PNG whose output pattern names that PNG would replace the original.
        if let source = info.sourceImage, URL(fileURLWithPath: path).standardizedFileURL.path == source {
            throw NodeError.invalidInput("'\(path)' is the image this workflow was read from; writing there would replace it, "
                                         + "so choose another output (e.g. --set output=out/{stem}-{seed}.png)")
        }
        switch try context[Self.bits] {
        case "8": image.bitDepth = 8
        case "16": image.bitDepth = 16
        default: break
        }
        var text: [(key: String, value: String)] = []
        if try context[Self.metadata] {
            text.append((ImageMetadataKey.workflow, info.workflowText))
            text.append((ImageMetadataKey.workflowPath, info.workflowPath))
            text.append((ImageMetadataKey.parameters, parametersJSON(info)))
            text.append((ImageMetadataKey.cacheKey, context.executionKey))
            if let a1111 = GenerationText.a1111(info.generation, width: image.width, height: image.height) {
                text.append(("parameters", a1111))
            }
        }
        try ImageFile.write(image, to: path, text: text, quality: try context[Self.quality])
        return [:]
    }

    static func outputFiles(_ context: NodeContext) throws -> [String] {
        [try PathTemplate.outputPath(try context[Self.path], context: context)]
    }

    /// A PNG written before with the same cache key (recorded in its metadata) holds this result.
    static func isUpToDate(_ context: NodeContext) -> Bool {
        guard let path = try? outputFiles(context).first, path.lowercased().hasSuffix(".png"),
              FileManager.default.fileExists(atPath: path), let existing = try? ImageFile.read(path) else { return false }
        return existing.metadata[ImageMetadataKey.cacheKey] == context.executionKey
    }

    /// The resolved parameters as JSON: the workflow's, and every upstream node's.
    static func parametersJSON(_ info: RunInfo) -> String {
        var nodes: [String: Any] = [:]
        for node in info.upstream { nodes[node.name] = ["type": node.type, "parameters": node.parameters.mapValues(\.description)] }
        let object: [String: Any] = ["parameters": info.parameters, "nodes": nodes]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(data: data, encoding: .utf8) ?? "{}"
    }
}

/// A1111's "parameters" text of an image from the generation settings upstream nodes describe
/// (`RunInfo.generation`): the prompt, "Negative prompt: ...", then "Steps: 20, Sampler: ...".
enum GenerationText {
    /// Settings in A1111's order; others follow by name.
    static let order = ["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Denoising strength"]

    static func a1111(_ generation: [String: String], width: Int, height: Int) -> String? {
        guard generation["Steps"] != nil else { return nil }
        var settings = generation.filter { $0.key != "prompt" && $0.key != "negative" }
        settings["Size"] = "\(width)x\(height)"
        let keys = order.filter { settings[$0] != nil } + settings.keys.filter { !order.contains($0) }.sorted()
        var lines = [generation["prompt"] ?? ""]
        if let negative = generation["negative"], !negative.isEmpty { lines.append("Negative prompt: \(negative)") }
        lines.append(keys.map { "\($0): \(settings[$0]!)" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
