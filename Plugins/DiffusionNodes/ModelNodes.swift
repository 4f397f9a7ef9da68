import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import Sampling
import TensorCore

/// One part of an opened checkpoint, passed between nodes as a model handle; the weights are
/// built on first use and shared by every node in the run through the run's model cache.
final class CheckpointPart: Sendable {
    enum Part: String { case unet, clip, vae }

    let checkpoint: Checkpoint
    /// What the checkpoint was opened from, as the model cache knows it (`NodeContext.modelSource`).
    let source: String
    let part: Part
    /// How the checkpoint holds F16/BF16 weights (load_checkpoint's `weights`).
    let storage: Checkpoint.WeightStorage
    /// The LoRAs applied so far (load_lora), in order, as their sources (`modelSource`), and their deltas.
    let loras: [String]
    let patches: WeightPatches
    /// SDXL's second text encoder's deltas (of a clip part).
    let patches2: WeightPatches

    init(checkpoint: Checkpoint, source: String, part: Part, storage: Checkpoint.WeightStorage, loras: [String] = [],
         patches: WeightPatches = [:], patches2: WeightPatches = [:]) {
        self.checkpoint = checkpoint
        self.source = source
        self.part = part
        self.storage = storage
        self.loras = loras
        self.patches = patches
        self.patches2 = patches2
    }

    /// This part with another LoRA's deltas added after the ones it has.
    func adding(_ lora: String, _ more: WeightPatches, second: WeightPatches = [:]) -> CheckpointPart {
        CheckpointPart(checkpoint: checkpoint, source: source, part: part, storage: storage, loras: loras + [lora],
                       patches: patches.merging(more, uniquingKeysWith: +), patches2: patches2.merging(second, uniquingKeysWith: +))
    }

    /// The key of the loaded weights in the run's model cache: the same file opened with another
    /// weight storage is another model.
    var key: String { "\(source)#\(part.rawValue)@\(storage.rawValue)" + loras.map { "+lora:" + $0 }.joined() }
}

extension NodeContext {
    /// What a loader node's model is kept under in the model cache: the node's key, which
    /// changes with the file's content and the parameters (a file replaced while a server runs is
    /// loaded again), or the path where there is no key.
    func modelSource(_ path: String) -> String { executionKey.isEmpty ? path : executionKey }

    /// The checkpoint part connected to `input`, checked to be of the right kind.
    func checkpointPart(_ input: String, _ part: CheckpointPart.Part) throws -> CheckpointPart {
        guard let handle = self.input(input)?.modelValue, let value = handle.payload as? CheckpointPart, value.part == part else {
            throw NodeError.invalidInput("input '\(input)' is not a \(part.rawValue) from load_checkpoint")
        }
        return value
    }

    func loadedUNet(_ input: String) throws -> UNet {
        let part = try checkpointPart(input, .unet)
        return try models.model(ModelKey(part.key)) { try part.checkpoint.loadUNet(patches: part.patches) }
    }

    /// The autoencoder connected to `input`: a checkpoint's VAE, or a full VAE or TAESD from load_vae.
    func loadedVAE(_ input: String) throws -> any LatentAutoencoder {
        if let tiny = self.input(input)?.modelValue?.payload as? TinyVAEHandle { return tiny.model }
        if let file = self.input(input)?.modelValue?.payload as? VAEFileHandle {
            return try models.model(ModelKey("vae-file:" + file.source)) { try file.file.load() }
        }
        let part = try checkpointPart(input, .vae)
        return try models.model(ModelKey(part.key)) { try part.checkpoint.loadVAE() }
    }

    /// The latent cell size and channels of the autoencoder connected to `input` (SD 1.x's 8 and 4
    /// when none is), from its config: no weights are loaded.
    func latentGeometry(_ input: String) throws -> (factor: Int, channels: Int) {
        guard let value = self.input(input) else { return (8, 4) }
        if let tiny = value.modelValue?.payload as? TinyVAEHandle { return (tiny.model.downsamplingFactor, tiny.model.latentChannels) }
        if let file = value.modelValue?.payload as? VAEFileHandle { return (file.file.config.downscale, file.file.config.latentChannels) }
        let config = try checkpointPart(input, .vae).checkpoint.configs.vae
        return (config.downscale, config.latentChannels)
    }

    /// SDXL's two text encoders, connected to `input` (nil for an SD 1.x text encoder).
    func loadedSDXLEncoders(_ input: String) throws -> SDXLTextEncoders? {
        let part = try checkpointPart(input, .clip)
        guard part.checkpoint.isSDXL else { return nil }
        let first = try models.model(ModelKey(part.key)) { try part.checkpoint.loadTextEncoder(patches: part.patches) }
        let second = try models.model(ModelKey(part.key + "#2")) { try part.checkpoint.loadTextEncoder2(patches: part.patches2) }
        return SDXLTextEncoders(first: first, second: second)
    }

    func loadedTextEncoder(_ input: String) throws -> (CLIPTextEncoder, CLIPTokenizer) {
        let part = try checkpointPart(input, .clip)
        let encoder = try models.model(ModelKey(part.key)) { try part.checkpoint.loadTextEncoder(patches: part.patches) }
        let tokenizer = try models.model(ModelKey(part.source + "#tokenizer")) { try part.checkpoint.loadTokenizer() }
        return (encoder, tokenizer)
    }
}

/// `load_checkpoint`: an SD 1.x checkpoint, single file or diffusers folder.
struct LoadCheckpoint: GenerationDescribing {
    static let path = Param<String>("path", .inputPath(.fileOrFolder), help: "the checkpoint file or diffusers folder")
    static let weights = Param<String>("weights", .choice(["float32", "as-stored"]), default: "float32",
        help: "float32: widen the UNet's F16/BF16 weights once (fastest); as-stored: keep them 16-bit (about half the memory)")
    static let description = NodeDescription(
        name: "load_checkpoint",
        summary: "Open an SD 1.x checkpoint (.safetensors single file or diffusers folder; F32, F16 or BF16).",
        outputs: [
            .init("unet", .unet, help: "the denoising UNet"),
            .init("clip", .clip, help: "the text encoder and its tokenizer"),
            .init("vae", .vae, help: "the autoencoder"),
        ],
        parameters: [path, weights])

    /// Saved images record the checkpoint's file name (A1111's "Model").
    static func generationParameters(_ node: RunInfo.UpstreamNode, upstream: [String: RunInfo.UpstreamNode]) -> [String: String] {
        node[path].map { ["Model": URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent] } ?? [:]
    }

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context[Self.path]
        let storage = Checkpoint.WeightStorage(rawValue: try context[Self.weights]) ?? .float32
        let source = context.modelSource(path)
        let checkpoint = try context.models.model(ModelKey("checkpoint:\(storage.rawValue):" + source)) { try Checkpoint(path: path, weights: storage) }
        func handle(_ part: CheckpointPart.Part, _ type: ValueType) -> Value {
            .model(ModelHandle(type: type, payload: CheckpointPart(checkpoint: checkpoint, source: source, part: part, storage: storage)))
        }
        return ["unet": handle(.unet, .unet), "clip": handle(.clip, .clip), "vae": handle(.vae, .vae)]
    }
}

/// `load_lora`: a LoRA's deltas added to the UNet and the text encoder (ComfyUI's LoraLoader).
struct LoadLoRA: Node {
    static let path = Param<String>("path", .inputPath(.file), default: "",
        help: "the LoRA file (.safetensors); empty: the parts pass through unchanged")
    static let strengthModel = Param<Double>("strength_model", .number(-10...10), default: 1,
        help: "how much of the LoRA goes into the UNet")
    static let strengthClip = Param<Double>("strength_clip", .number(-10...10), default: 1,
        help: "how much of the LoRA goes into the text encoder")
    static let description = NodeDescription(
        name: "load_lora", summary: "Apply a LoRA (kohya/A1111, diffusers/peft or LoCon .safetensors) to the UNet and the text encoder.",
        inputs: [.init("unet", .unet, help: "the UNet (from load_checkpoint or another load_lora)"),
                 .init("clip", .clip, help: "the text encoder")],
        outputs: [.init("unet", .unet, help: "the UNet with the LoRA"), .init("clip", .clip, help: "the text encoder with the LoRA")],
        parameters: [path, strengthModel, strengthClip])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let unet = try context.checkpointPart("unet", .unet), clip = try context.checkpointPart("clip", .clip)
        guard unet.checkpoint === clip.checkpoint else {
            throw NodeError.invalidInput("'unet' and 'clip' come from different checkpoints")
        }
        let path = try context[Self.path]
        if path.isEmpty { return ["unet": context.input("unet")!, "clip": context.input("clip")!] }
        let (unetStrength, clipStrength) = (Float(try context[Self.strengthModel]), Float(try context[Self.strengthClip]))
        let lora = try LoRA(path: path)
        let patches = try unet.checkpoint.patches(lora, unetStrength: unetStrength, textStrength: clipStrength)
        func handle(_ part: CheckpointPart, _ patches: WeightPatches, _ second: WeightPatches, _ strength: Float, _ type: ValueType) -> Value {
            let patched = part.adding(context.modelSource("\(path)@\(strength)"), patches, second: second)
            return .model(ModelHandle(type: type, payload: patched))
        }
        return ["unet": handle(unet, patches.unet, [:], unetStrength, .unet),
                "clip": handle(clip, patches.textEncoder, patches.textEncoder2, clipStrength, .clip)]
    }
}

/// A TAESD model passed between nodes as a `vae`.
final class TinyVAEHandle: Sendable {
    let model: TinyAutoencoder
    init(_ model: TinyAutoencoder) { self.model = model }
}

/// A full autoencoder file passed between nodes as a `vae` (its weights load on first use).
final class VAEFileHandle: Sendable {
    let file: VAEFile
    /// What the file was opened from (`NodeContext.modelSource`).
    let source: String
    init(_ file: VAEFile, source: String) { (self.file, self.source) = (file, source) }
}

/// `load_vae`: a separate VAE that replaces a checkpoint's wherever a VAE goes: a full one (A1111's
/// "SD VAE", such as vae-ft-mse-840000), or TAESD, the tiny autoencoder, for fast previews and decodes.
struct LoadVAE: Node {
    static let path = Param<String>("path", .inputPath(.fileOrFolder), default: "",
        help: "a full VAE (.safetensors/.ckpt/.pt with LDM or diffusers names, or a diffusers vae/ folder), "
            + "or TAESD (an AutoencoderTiny folder, taesd_decoder.safetensors or their folder); empty: the 'vae' input")
    static let description = NodeDescription(
        name: "load_vae", summary: "Load a separate VAE: a full one (single file or diffusers vae/ folder) or TAESD.",
        inputs: [.init("vae", .vae, optional: true, help: "the VAE to pass on when no path is given (a checkpoint's)")],
        outputs: [.init("vae", .vae, help: "the autoencoder (TAESD: about 20x faster than the full VAE, a little less detailed)")],
        parameters: [path])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context[Self.path]
        if path.isEmpty {
            guard let given = context.input("vae") else { throw NodeError.invalidInput("give a VAE path, or connect a 'vae' to pass on") }
            return ["vae": given]
        }
        if TinyAutoencoder.recognises(path) {
            let model = try context.models.model(ModelKey("taesd:" + context.modelSource(path))) { try TinyAutoencoder(path: path) }
            return ["vae": .model(ModelHandle(type: .vae, payload: TinyVAEHandle(model)))]
        }
        let source = context.modelSource(path)
        let file = try context.models.model(ModelKey("vae-file-header:" + source)) { try VAEFile(path: path) }
        return ["vae": .model(ModelHandle(type: .vae, payload: VAEFileHandle(file, source: source)))]
    }
}

/// `clip_encode`: a prompt to conditioning.
struct CLIPEncode: Node {
    static let text = Param<String>("text", .text,
        help: "the prompt (an empty text is the unconditional prompt); (word:1.2), [word] and BREAK as in A1111")
    static let clipSkip = Param<Int>("clip_skip", .integer(1...12), default: 1,
        help: "use the output of this layer from the end (1: last, as diffusers; 2: penultimate, as many anime models)")
    static let weighting = Param<PromptWeighting>("weighting", default: .a1111,
        help: "a1111: (x) x1.1, [x] /1.1, (x:w), BREAK, mean restored; comfy: ComfyUI's weights; none: brackets are text")
    static let embeddings = Param<String>("embeddings", .inputPath(.folder), default: "",
        help: "a folder of textual-inversion embeddings (.safetensors), used as embedding:NAME or by their bare name")
    static let description = NodeDescription(
        name: "clip_encode", summary: "Encode a prompt with the text encoder (weighted, any length: 75 tokens per chunk).",
        version: 2,
        inputs: [.init("clip", .clip, help: "the text encoder")],
        outputs: [.init("conditioning", .conditioning, help: "(1, 77 x chunks, width) text embedding; SDXL: both encoders' (width 2048) and the pooled text")],
        parameters: [text, clipSkip, weighting, embeddings])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let (encoder, tokenizer) = try context.loadedTextEncoder("clip")
        let weighting = try context[Self.weighting]
        let folder = try context[Self.embeddings]
        let library = try folder.isEmpty ? EmbeddingLibrary() : EmbeddingLibrary(folder: folder)
        let chunks = try tokenizer.chunks(try context[Self.text], weighting: weighting, embeddings: library)
        if let vector = chunks.vectors.first(where: { $0.count != encoder.config.width }) {
            throw NodeError.invalidInput("an embedding in the prompt has \(vector.count)-wide vectors; this text encoder's are \(encoder.config.width) wide"
                                         + (vector.count == 1024 ? " (an SD 2.x embedding?)" : ""))
        }
        guard chunks.ids.count <= maximumChunks else {
            throw NodeError.invalidInput("the prompt has \(chunks.tokenCount) tokens, \(chunks.ids.count) chunks of 75; at most \(maximumChunks) chunks are encoded")
        }
        if let sdxl = try context.loadedSDXLEncoders("clip") {
            guard chunks.vectors.isEmpty else { throw NodeError.invalidInput("textual-inversion embeddings for SDXL are not supported yet") }
            guard try context[Self.clipSkip] == 1 else {
                throw NodeError.invalidInput("SDXL's text encoders always give their penultimate layer; clip_skip does not apply (leave it at 1)")
            }
            let (conditioning, pooled) = sdxl.encode(chunks, weighting: weighting, emptyIDs: tokenizer.encode("").ids)
            try requireFinite(conditioning, "the text encoders' output (conditioning)", weights: "text encoder")
            return ["conditioning": .conditioning(conditioning, pooled: pooled)]
        }
        let skip = try context[Self.clipSkip] - 1
        guard skip < encoder.config.layers else {
            throw NodeError.invalidInput("clip_skip \(skip + 1) is more than the text encoder's \(encoder.config.layers) layers")
        }
        let conditioning = encoder.encode(chunks, weighting: weighting, emptyIDs: tokenizer.encode("").ids, skippedLayers: skip)
        try requireFinite(conditioning, "the text encoder's output (conditioning)", weights: "text encoder")
        return ["conditioning": .conditioning(conditioning)]
    }

    /// A bound on prompt length (64 chunks, 4800 tokens): each chunk adds 77 keys to every
    /// cross-attention of every UNet step.
    static let maximumChunks = 64
}

/// `vae_encode`: an image to scaled latents.
struct VAEEncode: Node {
    static let mode = Param<String>("mode", .choice(["mean", "sample"]), default: "mean",
        help: "mean (as ComfyUI), or a sample of the posterior drawn with seed (as diffusers' img2img)")
    static let seed = Param<Int>("seed", .seed, default: 0, help: "seed of the sample")
    static let description = NodeDescription(
        name: "vae_encode", summary: "Encode an image into latents (the posterior mean, or a sample).",
        inputs: [.init("vae", .vae, help: "the autoencoder"),
                 .init("image", .image, help: "the image (centre-cropped to multiples of 8 if needed, as ComfyUI does)")],
        outputs: [.init("latent", .latent, help: "scaled latents (1, 4, H/8, W/8)")],
        parameters: [mode, seed] + VAETilingParameters.all)

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let vae = try context.loadedVAE("vae")
        var image = try context.image("image")
        if let tiny = vae as? TinyAutoencoder, !tiny.canEncode {
            throw NodeError.invalidInput("the TAESD at \(tiny.path) has no encoder: put taesd_encoder.safetensors next to taesd_decoder.safetensors")
        }
        let factor = vae.downsamplingFactor
        if image.width % factor != 0 || image.height % factor != 0 {
            guard image.width >= factor && image.height >= factor else {
                throw NodeError.invalidInput("the image is \(image.width)x\(image.height), smaller than the VAE's \(factor)-pixel cells")
            }
            context.warn("the image is \(image.width)x\(image.height); centre-cropped to multiples of \(factor) (fit_to_multiple chooses how)")
            image = image.fittedToMultiple(of: factor, mode: .crop)
        }
        let input = image.tensor()
        var noise: Tensor?
        if try context[Self.mode] == "sample" {
            let shape = [1, vae.latentChannels, image.height / factor, image.width / factor]
            noise = TorchGenerator(seed: UInt64(try context[Self.seed])).randn(shape)
        }
        let tiling = try VAETilingParameters.tiling(context, vae: vae, width: image.width, height: image.height)
        let latent = vae.encode(input, noise: noise, tiling: tiling)
        try requireFinite(latent, "the VAE encoder's latents", weights: "VAE encoder")
        return ["latent": .latent(latent)]
    }
}

/// `vae_decode`: latents to an image.
struct VAEDecode: Node {
    static let description = NodeDescription(
        name: "vae_decode", summary: "Decode latents into an image.",
        inputs: [.init("vae", .vae, help: "the autoencoder"), .init("latent", .latent, help: "scaled latents")],
        outputs: [.init("image", .image, help: "the RGB image")],
        parameters: VAETilingParameters.all)

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let vae = try context.loadedVAE("vae")
        let latent = try context.latent("latent")
        if let tiny = vae as? TinyAutoencoder, !tiny.canDecode {
            throw NodeError.invalidInput("the TAESD at \(tiny.path) has no decoder: put taesd_decoder.safetensors next to taesd_encoder.safetensors")
        }
        guard latent.rank == 4, latent.shape[1] == vae.latentChannels else {
            throw NodeError.invalidInput("the latent has shape \(latent.shape); this VAE decodes (N, \(vae.latentChannels), h, w)")
        }
        let f = vae.downsamplingFactor
        let tiling = try VAETilingParameters.tiling(context, vae: vae, width: latent.shape[3] * f, height: latent.shape[2] * f)
        let decoded = vae.decode(latent.slice(0..<1), tiling: tiling)
        try requireFinite(decoded, "the VAE decoder's image", weights: "VAE decoder (or the latents given to it)")
        return ["image": .image(Image(modelOutput: decoded))]
    }
}

/// The tiling parameters `vae_encode` and `vae_decode` share.
enum VAETilingParameters {
    static let tiled = Param<TileMode>("tiled", default: .auto,
        help: "process big images in overlapping tiles (memory and time linear in pixels): auto tiles images over 1 megapixel; "
            + "on tiles anything larger than one tile (as diffusers' enable_vae_tiling); off never tiles")
    static let tileSize = Param<Int>("tile_size", .integer(8...8192), default: VAETiling.standard.tileSize,
        help: "tile side in image pixels (a multiple of 8; diffusers: 512)")
    static let tileOverlap = Param<Int>("tile_overlap", .integer(0...4096), default: VAETiling.standard.overlap,
        help: "pixels neighbouring tiles share and blend over (a multiple of 8, less than tile_size; diffusers: 128)")
    static let all: [any ParameterDeclaration] = [tiled, tileSize, tileOverlap]

    /// The tiling to use for a `width` x `height` image, or nil to process it whole; an image too big
    /// for the memory left is refused before any work when it is not to be tiled.
    static func tiling(_ context: NodeContext, vae: any LatentAutoencoder, width: Int, height: Int) throws -> VAETiling? {
        guard try context[tiled].wantsTiles(pixels: width * height) else {
            if let problem = VAETiling.untiledProblem(vae, width: width, height: height, available: SystemMemory.available()) {
                throw NodeError.invalidInput(problem)
            }
            return nil
        }
        let tiling = VAETiling(tileSize: try context[tileSize], overlap: try context[tileOverlap])
        if let problem = tiling.problem(downscale: vae.downsamplingFactor) { throw NodeError.invalidInput(problem) }
        return tiling
    }
}

/// A node's `tiled` setting (`vae_encode`, `vae_decode` and `denoise`).
enum TileMode: String, ChoiceParameter {
    case auto, on, off

    /// Whether an image of `pixels` pixels is tiled (`auto`: over `VAETiling.automaticAbovePixels`).
    func wantsTiles(pixels: Int) -> Bool {
        switch self {
        case .off: false
        case .auto: pixels > VAETiling.automaticAbovePixels
        case .on: true
        }
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
    static let width = Param<Int>("width", .integer(8...8192), default: 512, help: "image width (a multiple of 8)")
    static let height = Param<Int>("height", .integer(8...8192), default: 512, help: "image height (a multiple of 8)")
    static let description = NodeDescription(
        name: "empty_latent", summary: "A blank latent of an image size, to generate from noise.",
        inputs: [.init("vae", .vae, optional: true, help: "the autoencoder, for its scale (8 for SD 1.x when not connected)")],
        outputs: [.init("latent", .latent, help: "zeros (1, 4, height/8, width/8)")],
        parameters: [width, height])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let (factor, channels) = try context.latentGeometry("vae")
        let (w, h) = (try context[Self.width], try context[Self.height])
        guard w % factor == 0 && h % factor == 0 else {
            throw NodeError.invalidInput("\(w)x\(h) is not a multiple of \(factor)")
        }
        return ["latent": .latent(Tensor(zeros: [1, channels, h / factor, w / factor]))]
    }
}
