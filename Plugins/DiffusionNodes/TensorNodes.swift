import Foundation
import ImageIO
import NodeKit
import SafeTensors
import TensorCore

/// `load_tensor`: one tensor of a .safetensors file (noise from another tool, saved latents). A
/// path with `{stem}` or `{index}` reads one file per item of the workflow's batch (the engine
/// fills them in), pairing the files with `load_images`' images by name as `mask_folder` does.
struct LoadTensor: Node {
    static let path = Param<String>("path", .inputPath(.file),
        help: "the .safetensors file; in a batch, {stem} and {index} name each item's own file (e.g. latents/{stem}.safetensors)")
    static let name = Param<String>("name", .text, default: "", help: "the tensor's name (empty: the file's only tensor)")
    static let description = NodeDescription(
        name: "load_tensor", summary: "Load a tensor from a .safetensors file (also usable as a latent, noise or conditioning).",
        outputs: [.init("tensor", .tensor, help: "the tensor, as float32")],
        parameters: [path, name])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let file = try SafeTensorsFile(path: try context[Self.path])
        var name = try context[Self.name]
        if name.isEmpty {
            guard file.names.count == 1 else {
                throw NodeError.invalidInput("\(file.path) holds \(file.names.count) tensors; give one with name: (\(file.names.prefix(5).joined(separator: ", ")))")
            }
            name = file.names[0]
        }
        return ["tensor": .tensor(try file.tensor(name).copied())]
    }
}

/// `save_tensor`: writes a tensor (or latent, or conditioning) to a .safetensors file. As with
/// `save_image`, the path may name each batch item's own file, two items writing one file are
/// refused before anything runs, and a file already written with the same cache key is left alone.
struct SaveTensor: FileWritingNode {
    static let path = Param<String>("path", .outputPath,
        help: "the file to write; may use {stem} (source file name), {index}, {seed} and {node}, e.g. latents/{stem}.safetensors")
    static let name = Param<String>("name", .text, default: "tensor", help: "the tensor's name in the file")
    static let dtype = Param<String>("dtype", .choice(["f32", "f16"]), default: "f32", help: "storage precision")
    static let description = NodeDescription(
        name: "save_tensor", summary: "Save a tensor, latent or conditioning to a .safetensors file.",
        inputs: [.init("tensor", .tensor, help: "what to save")],
        parameters: [path, name, dtype],
        isOutput: true, alwaysRuns: true)

    /// The metadata entry that records the cache key of what the file holds.
    static let keyEntry = "sdflow:key"

    static func run(_ context: NodeContext) throws -> [String: Value] {
        guard let tensor = context.input("tensor")?.tensorValue else { throw NodeError.invalidInput("input 'tensor' is not a tensor") }
        let path = try PathTemplate.outputPath(try context[Self.path], context: context)
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        try SafeTensorsWriter.write([try context[Self.name]: tensor], metadata: [keyEntry: context.executionKey],
                                    storage: try context[Self.dtype] == "f16" ? .f16 : .f32, to: path)
        return [:]
    }

    static func outputFiles(_ context: NodeContext) throws -> [String] {
        [try PathTemplate.outputPath(try context[Self.path], context: context)]
    }

    /// A file written before with the same cache key (recorded in its metadata) holds this result.
    static func isUpToDate(_ context: NodeContext) -> Bool {
        guard let path = try? outputFiles(context).first, FileManager.default.fileExists(atPath: path),
              let existing = try? SafeTensorsFile(path: path) else { return false }
        return existing.metadata[keyEntry] == context.executionKey
    }
}

/// `erase_masked`: the image with the masked area set to mid-gray, the input of 9-channel
/// inpainting models (diffusers: image * (mask < 0.5) in [-1, 1]).
struct EraseMasked: Node {
    static let description = NodeDescription(
        name: "erase_masked", summary: "Blank the masked area to mid-gray (for 9-channel inpainting models' masked_latent).",
        inputs: [.init("image", .image, help: "the image"), .init("mask", .mask, help: "the mask (white = repaint)")],
        outputs: [.init("image", .image, help: "the image with the masked area gray")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image").rgb(), mask = try context.mask("mask")
        guard mask.width == image.width && mask.height == image.height else {
            throw NodeError.invalidInput("the mask is \(mask.width)x\(mask.height) but the image is \(image.width)x\(image.height)")
        }
        let plane = image.width * image.height
        var pixels = image.pixels
        let p = pixels.mutablePointer(), m = mask.pixels.pointer
        for i in 0..<plane where m[i] >= 0.5 { for c in 0..<3 { p[c * plane + i] = 0.5 } }
        return ["image": .image(Image(pixels: pixels, metadata: image.metadata, bitDepth: image.bitDepth))]
    }
}

/// `upscale_latent`: a latent resized, the first half of a hires fix (ComfyUI's LatentUpscale and
/// LatentUpscaleBy, AUTOMATIC1111's latent upscalers); a second `denoise` at a strength of about
/// 0.5 then adds the detail the new size can hold.
struct UpscaleLatent: Node {
    static let method = Param<Tensor.Interpolation>("method", default: .bilinear,
        help: "bilinear (A1111's \"Latent\"), bicubic, nearest-exact (ComfyUI's default) or nearest, as PyTorch's interpolate")
    static let scale = Param<Double>("scale", .number(0.05...8), default: 2,
        help: "the factor for both sides (the new size is rounded), unless width and height are given")
    static let width = Param<Int>("width", .integer(0...16384), default: 0,
        help: "the image width to resize to (a multiple of the VAE's 8); 0: by scale")
    static let height = Param<Int>("height", .integer(0...16384), default: 0, help: "the image height to resize to; 0: by scale")
    static let description = NodeDescription(
        name: "upscale_latent", summary: "Resize a latent by a factor or to an image size (for a hires fix).",
        inputs: [.init("latent", .latent, help: "the latent to resize"),
                 .init("vae", .vae, optional: true, help: "the autoencoder, for its scale (8 for SD 1.x when not connected)")],
        outputs: [.init("latent", .latent, help: "the resized latent")],
        parameters: [method, scale, width, height])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let latent = try context.latent("latent")
        guard latent.rank == 4 else { throw NodeError.invalidInput("the latent has shape \(latent.shape); expected (N, C, h, w)") }
        let factor = try context.latentGeometry("vae").factor
        let (width, height) = (try context[Self.width], try context[Self.height])
        let size: (height: Int, width: Int)
        switch (width, height) {
        case (0, 0):
            let scale = try context[Self.scale]
            size = (Int((Double(latent.shape[2]) * scale).rounded()), Int((Double(latent.shape[3]) * scale).rounded()))
            guard size.height >= 1 && size.width >= 1 else {
                throw NodeError.invalidInput("scale \(scale) makes the \(latent.shape[2])x\(latent.shape[3]) latent empty")
            }
        case (1..., 1...):
            guard width % factor == 0 && height % factor == 0 else { throw NodeError.invalidInput("\(width)x\(height) is not a multiple of \(factor)") }
            size = (height / factor, width / factor)
        default:
            throw NodeError.invalidInput("give both width and height, or neither (then scale is used)")
        }
        let method = try context[Self.method]
        return ["latent": .latent(latent.resized(height: size.height, width: size.width, interpolation: method))]
    }
}
