import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import Sampling
import TensorCore

/// One part of an opened checkpoint, passed between nodes as a model handle; the weights are
/// built on first use and shared by every node in the run through the run's model cache.
final class CheckpointPart: @unchecked Sendable {
    enum Part: String { case unet, clip, vae }

    let checkpoint: Checkpoint
    let part: Part

    init(checkpoint: Checkpoint, part: Part) {
        self.checkpoint = checkpoint
        self.part = part
    }

    /// The cache key of the loaded weights in the run's model cache.
    var key: String { "\(checkpoint.path)#\(part.rawValue)" }
}

extension NodeContext {
    /// The checkpoint part connected to `input`, checked to be of the right kind.
    func checkpointPart(_ input: String, _ part: CheckpointPart.Part) throws -> CheckpointPart {
        guard let handle = self.input(input)?.modelValue, let value = handle.payload as? CheckpointPart, value.part == part else {
            throw NodeError.invalidInput("input '\(input)' is not a \(part.rawValue) from load_checkpoint")
        }
        return value
    }

    func loadedUNet(_ input: String) throws -> UNet {
        let part = try checkpointPart(input, .unet)
        return try models.model(part.key) { try part.checkpoint.loadUNet() }
    }

    func loadedVAE(_ input: String) throws -> AutoencoderKL {
        let part = try checkpointPart(input, .vae)
        return try models.model(part.key) { try part.checkpoint.loadVAE() }
    }

    func loadedTextEncoder(_ input: String) throws -> (CLIPTextEncoder, CLIPTokenizer) {
        let part = try checkpointPart(input, .clip)
        let encoder = try models.model(part.key) { try part.checkpoint.loadTextEncoder() }
        let tokenizer = try models.model(part.key + "#tokenizer") { try part.checkpoint.loadTokenizer() }
        return (encoder, tokenizer)
    }
}

/// `load_checkpoint`: an SD 1.x checkpoint, single file or diffusers folder.
struct LoadCheckpoint: Node {
    static let description = NodeDescription(
        name: "load_checkpoint",
        summary: "Open an SD 1.x checkpoint (.safetensors single file or diffusers folder; F32, F16 or BF16).",
        outputs: [
            .init("unet", .unet, help: "the denoising UNet"),
            .init("clip", .clip, help: "the text encoder and its tokenizer"),
            .init("vae", .vae, help: "the autoencoder"),
        ],
        parameters: [
            .init("path", .inputPath(.fileOrFolder), help: "the checkpoint file or diffusers folder"),
            .init("weights", .choice(["float32", "as-stored"]), default: .text("float32"),
                  help: "float32: widen F16/BF16 weights once (fastest); as-stored: keep them 16-bit (about half the memory)"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context.string("path")
        let storage = Checkpoint.WeightStorage(rawValue: try context.string("weights")) ?? .float32
        let checkpoint = try context.models.model("checkpoint:\(storage.rawValue):" + path) { try Checkpoint(path: path, weights: storage) }
        func handle(_ part: CheckpointPart.Part, _ type: ValueType) -> Value {
            .model(ModelHandle(type: type, identity: path + "#" + part.rawValue, payload: CheckpointPart(checkpoint: checkpoint, part: part)))
        }
        return ["unet": handle(.unet, .unet), "clip": handle(.clip, .clip), "vae": handle(.vae, .vae)]
    }
}

/// `clip_encode`: a prompt to conditioning.
struct CLIPEncode: Node {
    static let description = NodeDescription(
        name: "clip_encode", summary: "Encode a prompt with the text encoder (77 tokens; longer prompts are cut with a warning).",
        inputs: [.init("clip", .clip, help: "the text encoder")],
        outputs: [.init("conditioning", .conditioning, help: "(1, 77, width) text embedding")],
        parameters: [
            .init("text", .text, help: "the prompt (an empty text is the unconditional prompt)"),
            .init("clip_skip", .integer(1...12), default: .integer(1),
                  help: "use the output of this layer from the end (1: last, as diffusers; 2: penultimate, as many anime models)"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let (encoder, tokenizer) = try context.loadedTextEncoder("clip")
        let encoding = tokenizer.encode(try context.string("text"))
        if encoding.droppedTokenCount > 0 {
            context.warn("the prompt is longer than 75 tokens; \(encoding.droppedTokenCount) tokens were cut, from \"\(encoding.droppedText)\"")
        }
        let skip = try context.int("clip_skip") - 1
        guard skip < encoder.config.layers else {
            throw NodeError.invalidInput("clip_skip \(skip + 1) is more than the text encoder's \(encoder.config.layers) layers")
        }
        let conditioning = encoder.encode([encoding.ids], skippedLayers: skip)
        try requireFinite(conditioning, "the text encoder's output (conditioning)", weights: "text encoder")
        return ["conditioning": .conditioning(conditioning)]
    }
}

/// `vae_encode`: an image to scaled latents.
struct VAEEncode: Node {
    static let description = NodeDescription(
        name: "vae_encode", summary: "Encode an image into latents (the posterior mean, or a sample).",
        inputs: [.init("vae", .vae, help: "the autoencoder"),
                 .init("image", .image, help: "the image (centre-cropped to multiples of 8 if needed, as ComfyUI does)")],
        outputs: [.init("latent", .latent, help: "scaled latents (1, 4, H/8, W/8)")],
        parameters: [
            .init("mode", .choice(["mean", "sample"]), default: .text("mean"),
                  help: "mean (as ComfyUI), or a sample of the posterior drawn with seed (as diffusers' img2img)"),
            .init("seed", .seed, default: .integer(0), help: "seed of the sample"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let vae = try context.loadedVAE("vae")
        var image = try context.image("image")
        let factor = vae.config.downscale
        if image.width % factor != 0 || image.height % factor != 0 {
            guard image.width >= factor && image.height >= factor else {
                throw NodeError.invalidInput("the image is \(image.width)x\(image.height), smaller than the VAE's \(factor)-pixel cells")
            }
            context.warn("the image is \(image.width)x\(image.height); centre-cropped to multiples of \(factor) (fit_to_multiple chooses how)")
            image = image.fittedToMultiple(of: factor, mode: .crop)
        }
        let input = image.tensor()
        var noise: Tensor?
        if try context.string("mode") == "sample" {
            let shape = [1, vae.config.latentChannels, image.height / factor, image.width / factor]
            noise = TorchGenerator(seed: UInt64(try context.int("seed"))).randn(shape)
        }
        let latent = vae.encode(input, noise: noise)
        try requireFinite(latent, "the VAE encoder's latents", weights: "VAE encoder")
        return ["latent": .latent(latent)]
    }
}

/// `vae_decode`: latents to an image.
struct VAEDecode: Node {
    static let description = NodeDescription(
        name: "vae_decode", summary: "Decode latents into an image.",
        inputs: [.init("vae", .vae, help: "the autoencoder"), .init("latent", .latent, help: "scaled latents")],
        outputs: [.init("image", .image, help: "the RGB image")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let vae = try context.loadedVAE("vae")
        let latent = try context.latent("latent")
        guard latent.rank == 4, latent.shape[1] == vae.config.latentChannels else {
            throw NodeError.invalidInput("the latent has shape \(latent.shape); this VAE decodes (N, \(vae.config.latentChannels), h, w)")
        }
        let decoded = vae.decode(latent.slice(0..<1))
        try requireFinite(decoded, "the VAE decoder's image", weights: "VAE decoder (or the latents given to it)")
        return ["image": .image(Image(modelOutput: decoded))]
    }
}

/// NaN or infinite values out of a model are an error naming it: they would silently give a
/// black image (A1111 stops the same way).
func requireFinite(_ tensor: Tensor, _ what: String, weights: String) throws {
    if tensor.hasNonFinite {
        throw NodeError.failed("\(what) has NaN or infinite values: the \(weights) weights are damaged")
    }
}

/// `empty_latent`: the starting latent of text-to-image (its content is replaced by noise).
struct EmptyLatent: Node {
    static let description = NodeDescription(
        name: "empty_latent", summary: "A blank latent of an image size, to generate from noise.",
        inputs: [.init("vae", .vae, optional: true, help: "the autoencoder, for its scale (8 for SD 1.x when not connected)")],
        outputs: [.init("latent", .latent, help: "zeros (1, 4, height/8, width/8)")],
        parameters: [
            .init("width", .integer(8...8192), default: .integer(512), help: "image width (a multiple of 8)"),
            .init("height", .integer(8...8192), default: .integer(512), help: "image height (a multiple of 8)"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        var factor = 8, channels = 4
        if context.input("vae") != nil {
            let vae = try context.loadedVAE("vae")
            factor = vae.config.downscale
            channels = vae.config.latentChannels
        }
        let (w, h) = (try context.int("width"), try context.int("height"))
        guard w % factor == 0 && h % factor == 0 else {
            throw NodeError.invalidInput("\(w)x\(h) is not a multiple of \(factor)")
        }
        return ["latent": .latent(Tensor(zeros: [1, channels, h / factor, w / factor]))]
    }
}
