import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import StableDiffusion
import TensorCore

/// An opened ControlNet file passed between nodes (its weights load when a denoise first uses it,
/// shaped by that UNet).
final class ControlNetHandle: Sendable {
    let file: ControlNetFile
    /// What the file was opened from (`NodeContext.modelSource`).
    let source: String
    init(_ file: ControlNetFile, source: String) { (self.file, self.source) = (file, source) }
}

/// ControlNets applied to their control images, in the order they were chained: what denoise
/// sums the residuals of.
final class ControlStack: Sendable {
    /// One ControlNet with its image and settings (apply_controlnet's parameters).
    struct Entry: Sendable {
        let net: ControlNetHandle
        let image: Image
        /// Marks the masked pixels -1: the inpaint ControlNet's condition.
        let mask: Image?
        let strength: Float
        let start: Double, end: Double
        let guessMode: Bool
        let resize: ControlResize
    }
    let entries: [Entry]
    init(_ entries: [Entry]) { self.entries = entries }
}

/// How a control image is brought to the size of the image being made (A1111's resize modes).
enum ControlResize: String, CaseIterable, ChoiceParameter {
    /// Stretched to the size (diffusers' pipelines).
    case justResize = "just_resize"
    /// Scaled to cover it and centre-cropped (A1111's default; ComfyUI's crop).
    case cropAndResize = "crop_and_resize"
    /// Scaled to fit inside it, the rest black.
    case resizeAndFill = "resize_and_fill"

    /// `image` at exactly `width` x `height` (Lanczos; no resampling when it has that size).
    func fitted(_ image: Image, width: Int, height: Int) -> Image {
        switch self {
        case .justResize: return image.resized(toWidth: width, height: height, mode: .exact)
        case .cropAndResize: return image.resized(toWidth: width, height: height, mode: .fill)
        case .resizeAndFill:
            let inside = image.resized(toWidth: width, height: height, mode: .fit)
            let (left, top) = ((width - inside.width) / 2, (height - inside.height) / 2)
            return inside.padded(top: top, bottom: height - inside.height - top, left: left, right: width - inside.width - left, mode: .constant(0))
        }
    }
}

/// `load_controlnet`: an SD 1.x ControlNet (A1111/lllyasviel single file or diffusers folder).
struct LoadControlNet: Node {
    static let path = Param<String>("path", .inputPath(.fileOrFolder),
        help: "the ControlNet: control_v11p_sd15_canny.safetensors (or .pth) or a diffusers ControlNetModel folder")
    static let description = NodeDescription(
        name: "load_controlnet", summary: "Open an SD 1.x ControlNet (canny, tile, depth, lineart, softedge, inpaint, ...).",
        outputs: [.init("controlnet", .controlnet, help: "the ControlNet; its weights load when a denoise first uses it")],
        parameters: [path])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context[Self.path]
        let source = context.modelSource(path)
        let file = try context.models.model(ModelKey("controlnet-file:" + source)) { try ControlNetFile(path: path) }
        return ["controlnet": .model(ModelHandle(type: .controlnet, payload: ControlNetHandle(file, source: source)))]
    }
}

/// `apply_controlnet`: a ControlNet with its control image, for denoise's `control` input
/// (ComfyUI's ControlNetApplyAdvanced; chain them for several ControlNets).
struct ApplyControlNet: Node {
    static let strength = Param<Double>("strength", .number(0...10), default: 1, help: "how much the ControlNet steers (its residuals times this)")
    static let startPercent = Param<Double>("start_percent", .number(0...1), default: 0, help: "the fraction of the steps where it starts guiding")
    static let endPercent = Param<Double>("end_percent", .number(0...1), default: 1, help: "the fraction of the steps where it stops")
    static let guessMode = Param<Bool>("guess_mode", .boolean, default: false,
        help: "\"ControlNet is more important\": only the prompt's half of the guided batch gets it, scaled from 0.1 (outer) to 1 (middle)")
    static let resizeMode = Param<ControlResize>("resize_mode", default: .cropAndResize,
        help: "fitting the control image to the image's size: just_resize stretches, crop_and_resize covers and crops, resize_and_fill fits and pads black")
    static let description = NodeDescription(
        name: "apply_controlnet",
        summary: "Steer a denoise with a ControlNet and its control image (edges, depth map, ...); chain several.",
        inputs: [
            .init("controlnet", .controlnet, help: "the ControlNet (load_controlnet)"),
            .init("image", .image, help: "the control image: canny edges, a depth or normal map, a pose, the photo for tile or inpaint, ..."),
            .init("mask", .mask, optional: true, help: "for the inpaint ControlNet: the area to repaint, whose pixels it sees as -1"),
            .init("control", .control, optional: true, help: "ControlNets applied before this one (their residuals are summed)"),
        ],
        outputs: [.init("control", .control, help: "for denoise's 'control' input")],
        parameters: [strength, startPercent, endPercent, guessMode, resizeMode])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        guard let net = context.input("controlnet")?.modelValue?.payload as? ControlNetHandle else {
            throw NodeError.invalidInput("input 'controlnet' is not a ControlNet from load_controlnet")
        }
        let (start, end) = (try context[Self.startPercent], try context[Self.endPercent])
        guard start < end else { throw NodeError.invalidInput("start_percent \(start) is not before end_percent \(end)") }
        var entries = (context.input("control")?.modelValue?.payload as? ControlStack)?.entries ?? []
        entries.append(.init(net: net, image: try context.image("image"), mask: context.input("mask")?.maskValue,
                             strength: Float(try context[Self.strength]), start: start, end: end,
                             guessMode: try context[Self.guessMode], resize: try context[Self.resizeMode]))
        return ["control": .model(ModelHandle(type: .control, payload: ControlStack(entries)))]
    }
}

extension NodeContext {
    /// The ControlNets connected to `input` as guides for latents of `latent`'s size and `unet`:
    /// each net loaded for that UNet, each control image fitted to the latent's size times the net's
    /// factor, RGB in [0, 1] (masked pixels -1 for an inpaint condition).
    func controlGuides(_ input: String, unet: UNet, latent: Tensor) throws -> [ControlGuide] {
        guard let value = self.input(input) else { return [] }
        guard let stack = value.modelValue?.payload as? ControlStack else {
            throw NodeError.invalidInput("input '\(input)' is not a control from apply_controlnet")
        }
        return try stack.entries.map { entry in
            let key = "controlnet:\(entry.net.source)@\(unet.config.groups)/\(unet.config.headsPerLevel)/\(unet.config.epsilon)"
            let net = try models.model(ModelKey<ControlNet>(key)) { try entry.net.file.load(for: unet.config) }
            let f = net.config.hintFactor
            let (width, height) = (latent.shape[3] * f, latent.shape[2] * f)
            var image = entry.resize.fitted(entry.image, width: width, height: height).rgb()
            if let mask = entry.mask {
                let fitted = entry.resize.fitted(mask, width: width, height: height)
                image = Image(pixels: image.pixels.broadcast(fitted.channel(0).pixels) { x, m in m >= 0.5 ? -1 : x })
            }
            guard image.channels == net.config.hintChannels else {
                throw NodeError.invalidInput("the ControlNet takes \(net.config.hintChannels)-channel control images, the image has \(image.channels)")
            }
            return ControlGuide(net: net, hint: image.pixels.reshaped([1, image.channels, height, width]), scale: entry.strength,
                                start: entry.start, end: entry.end, guessMode: entry.guessMode)
        }
    }
}
