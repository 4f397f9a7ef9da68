import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import TensorCore

/// An upscaler model passed between nodes.
final class UpscalerHandle: Sendable {
    let model: Upscaler
    init(_ model: Upscaler) { self.model = model }
}

/// `load_upscaler`: an ESRGAN-family model (ComfyUI's UpscaleModelLoader).
struct LoadUpscaler: Node {
    static let path = Param<String>("path", .inputPath(.file), help: "the model file (.pth is read without running any of its code)")
    static let description = NodeDescription(
        name: "load_upscaler",
        summary: "Load an upscaler model: ESRGAN, Real-ESRGAN, 4x-UltraSharp-style RRDBNets or SRVGGNetCompact (.pth or .safetensors).",
        outputs: [.init("upscaler", .upscaler, help: "the model; its architecture and scale come from its weights")],
        parameters: [path])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context[Self.path]
        let model = try context.models.model(ModelKey("upscaler:" + context.modelSource(path))) { try Upscaler(path: path) }
        return ["upscaler": .model(ModelHandle(type: .upscaler, payload: UpscalerHandle(model)))]
    }
}

/// `upscale_image`: an image through an upscaler model, in tiles (ComfyUI's ImageUpscaleWithModel).
struct UpscaleImage: Node {
    static let scale = Param<Double>("scale", .number(0...16), default: 0,
        help: "the final size over the input's: the model's result is resized to it (lanczos); 0: the model's own scale")
    static let tileSize = Param<Int>("tile_size", .integer(0...4096), default: 256,
        help: "input pixels per tile side (memory grows with its square); 0: the whole image at once")
    static let tileOverlap = Param<Int>("tile_overlap", .integer(0...512), default: 32,
        help: "input pixels shared by neighbouring tiles, blended")
    static let description = NodeDescription(
        name: "upscale_image", summary: "Upscale an image with an upscaler model, in overlapping tiles.",
        inputs: [.init("upscaler", .upscaler, help: "the model (load_upscaler)"), .init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the image, the model's scale larger (or `scale` larger)")],
        parameters: [scale, tileSize, tileOverlap])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        guard let handle = context.input("upscaler")?.modelValue?.payload as? UpscalerHandle else {
            throw NodeError.invalidInput("input 'upscaler' is not a model from load_upscaler")
        }
        let model = handle.model
        let image = try context.image("image")
        let scale = try context[Self.scale]
        let (width, height) = scale == 0 ? (image.width * model.scale, image.height * model.scale)
                                         : (Int((Double(image.width) * scale).rounded()), Int((Double(image.height) * scale).rounded()))
        for (w, h) in [(image.width * model.scale, image.height * model.scale), (width, height)] {
            if let problem = ImageFile.sizeProblem(width: w, height: h) { throw NodeError.invalidInput(problem) }
        }
        guard width >= 1 && height >= 1 else { throw NodeError.invalidInput("scale \(scale) makes the \(image.width)x\(image.height) image empty") }
        let tileSize = try context[Self.tileSize]
        let rgb = image.rgb()
        let input = rgb.pixels.reshaped([1, 3, image.height, image.width])
        let output = model.upscale(input, tileSize: tileSize == 0 ? nil : tileSize, overlap: try context[Self.tileOverlap])  // (1, 3, H s, W s)
        var result = Image(pixels: output.reshaped([3, image.height * model.scale, image.width * model.scale]), metadata: image.metadata,
                           bitDepth: image.bitDepth)
        if result.width != width || result.height != height { result = result.resized(toWidth: width, height: height, mode: .exact, filter: .lanczos) }
        if image.hasAlpha {  // alpha is not the model's business: resized as ComfyUI does (bilinear)
            let alpha = image.channel(image.channels - 1).resized(toWidth: width, height: height, mode: .exact, filter: .bilinear)
            result = Image(pixels: Tensor.concatenate([result.pixels, alpha.pixels], axis: 0), metadata: image.metadata, bitDepth: image.bitDepth)
        }
        return ["image": .image(result)]
    }
}
