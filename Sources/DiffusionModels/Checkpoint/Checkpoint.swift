import Foundation
import SafeTensors

/// A Stable Diffusion 1.x checkpoint on disk, in either layout users have:
///
/// - a single LDM file (`v1-5-pruned-emaonly.safetensors`, or the pickled `.ckpt`, read without running it): `model.diffusion_model.*`,
///   `first_stage_model.*`, `cond_stage_model.transformer[.text_model].*`, plus training
///   leftovers (`model_ema.*`, `alphas_cumprod`, ...) that are ignored by an explicit list;
/// - a diffusers folder: `unet/`, `vae/`, `text_encoder/` each with `config.json` and
///   safetensors weights (also `*.fp16.safetensors` or sharded with an index), and optionally
///   `tokenizer/` with `vocab.json` and `merges.txt`.
///
/// F32, F16 and BF16 weights load alike. Opening reads only headers; each component is built
/// on request, strictly: every tensor must be found with its expected shape and every stored
/// tensor must be used or on the ignore list.
public final class Checkpoint: Sendable {
    /// How the checkpoint is stored.
    public enum Layout: String, Sendable { case singleFile = "single-file", diffusers }

    /// The configs of the models.
    public struct Configs: Sendable, Equatable {
        public var unet: UNet.Config
        public var vae: AutoencoderKL.Config
        public var textEncoder: CLIPTextEncoder.Config
        /// SDXL's second text encoder (OpenCLIP ViT-bigG with its text projection).
        public var textEncoder2: CLIPTextEncoder.Config?

        public init(unet: UNet.Config, vae: AutoencoderKL.Config, textEncoder: CLIPTextEncoder.Config) {
            self.unet = unet
            self.vae = vae
            self.textEncoder = textEncoder
        }
    }

    public let path: String
    public let layout: Layout
    public let configs: Configs
    /// The parameters of each part by canonical name (LDM names for the UNet and VAE,
    /// transformers names for the text encoder).
    public let unetStore: ParameterStore
    public let vaeStore: ParameterStore
    public let textStore: ParameterStore
    /// SDXL's second text encoder's parameters (transformers names).
    public let textStore2: ParameterStore?
    let tokenizerFolder: String?

    /// Keys of single-file checkpoints that are not model weights (prefixes).
    public static let ignoredSingleFileKeys = [
        "model_ema.", "alphas_cumprod", "alphas_cumprod_prev", "betas", "log_one_minus_alphas_cumprod",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance",
        "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "logvar", "lvlb_weights", "first_stage_model.loss.",
    ]
    /// Keys inside the text encoder that are buffers, not weights.
    static let ignoredTextKeys = ["text_model.embeddings.position_ids", "embeddings.position_ids"]

    /// How the UNet's F16/BF16 weights are held in memory (the text encoder's and the VAE's are
    /// always widened per use).
    public enum WeightStorage: String, Sendable {
        /// Widened to float32 once, at load (the fastest steps).
        case float32
        /// Kept in the file's 16-bit precision and widened per use (about half the memory).
        case asStored = "as-stored"
    }

    /// Opens `path` (a `.safetensors` file or a diffusers folder). `configs` overrides the
    /// configs otherwise read from `config.json` or inferred from the tensors' shapes.
    /// F32 weights are always used in place from the memory-mapped file.
    public init(path: String, configs override: Configs? = nil, weights: WeightStorage = .float32) throws {
        self.path = path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw CheckpointError.notACheckpoint(path: path, reason: "no such file or folder")
        }
        if isFolder.boolValue {
            layout = .diffusers
            let folder = try DiffusersFolder(path: path)
            unetStore = folder.unet
            vaeStore = folder.vae
            textStore = folder.textEncoder
            textStore2 = folder.textEncoder2
            tokenizerFolder = folder.tokenizerFolder
            configs = try override ?? folder.configs()
        } else {
            layout = .singleFile
            let file = try SafeTensorsFile.weights(path: path)
            let split = try SingleFile.split(file)
            unetStore = split.unet
            vaeStore = split.vae
            textStore = split.textEncoder
            textStore2 = split.textEncoder2
            tokenizerFolder = nil
            configs = try override ?? ConfigInference.configs(unet: unetStore, vae: vaeStore, textEncoder: textStore,
                                                              textEncoder2: split.textEncoder2, path: path)
        }
        // The text encoder and the VAE run once or twice per image: their F16/BF16 matrices are
        // widened per use in either mode (the same values), so that their float32 copies do not stay
        // resident next to the UNet's; `weights` decides for the UNet, which runs at every step.
        unetStore.keepsHalfPrecision = weights == .asStored
        vaeStore.keepsHalfPrecision = true
        textStore.keepsHalfPrecision = true
        textStore2?.keepsHalfPrecision = true
    }

    /// Whether this is an SDXL checkpoint (two text encoders, the UNet's added conditioning).
    public var isSDXL: Bool { configs.unet.addition != nil }

    // MARK: - Components

    /// Builds the UNet, with `patches` (LoRA deltas) added, and checks that every UNet tensor was used.
    public func loadUNet(patches: WeightPatches = [:]) throws -> UNet {
        try requirePresent(unetStore, prefix: layout == .singleFile ? "model.diffusion_model." : "unet/")
        let store = patches.isEmpty ? unetStore : unetStore.patched(patches)
        let unet = try UNet(config: configs.unet, parameters: store.scope(""))
        try store.checkAllUsed()
        return unet
    }

    /// Builds the autoencoder and checks that every VAE tensor was used.
    public func loadVAE() throws -> AutoencoderKL {
        try requirePresent(vaeStore, prefix: layout == .singleFile ? "first_stage_model." : "vae/")
        let vae = try AutoencoderKL(config: configs.vae, parameters: vaeStore.scope(""))
        try vaeStore.checkAllUsed()
        return vae
    }

    /// Builds the text encoder, with `patches` (LoRA deltas) added, and checks that every text-encoder tensor was used.
    public func loadTextEncoder(patches: WeightPatches = [:]) throws -> CLIPTextEncoder {
        try loadTextEncoder(textStore, configs.textEncoder, patches: patches,
                            prefix: layout == .singleFile ? "cond_stage_model.transformer." : "text_encoder/")
    }

    /// SDXL's second text encoder (with its text projection), checked like the first.
    public func loadTextEncoder2(patches: WeightPatches = [:]) throws -> CLIPTextEncoder {
        guard let textStore2, let config = configs.textEncoder2 else {
            throw CheckpointError.notACheckpoint(path: path, reason: "it has no second text encoder (not an SDXL checkpoint)")
        }
        return try loadTextEncoder(textStore2, config, patches: patches, prefix: layout == .singleFile ? "conditioner.embedders.1." : "text_encoder_2/")
    }

    /// A text encoder from `store` (its `text_projection` too when `config` has one), `patches` added.
    private func loadTextEncoder(_ store: ParameterStore, _ config: CLIPTextEncoder.Config, patches: WeightPatches, prefix: String) throws -> CLIPTextEncoder {
        try requirePresent(store, prefix: prefix)
        let store = patches.isEmpty ? store : store.patched(patches)
        let encoder = try CLIPTextEncoder(config: config, parameters: store.scope("text_model"),
                                          projection: config.projectionWidth == nil ? nil : store.scope("text_projection"))
        try store.checkAllUsed(ignoring: Checkpoint.ignoredTextKeys)
        return encoder
    }

    /// The folder's own tokenizer when it has one, otherwise sdflow's bundled CLIP vocabulary.
    public func loadTokenizer() throws -> CLIPTokenizer {
        if let tokenizerFolder { return try CLIPTokenizer(folder: tokenizerFolder) }
        return try CLIPTokenizer.bundled()
    }

    private func requirePresent(_ store: ParameterStore, prefix: String) throws {
        if store.names.isEmpty {
            throw CheckpointError.notACheckpoint(path: path, reason: "it has no \(store.component) (no \(prefix)* tensors)")
        }
    }
}

// MARK: - Single file

/// Splits a single-file checkpoint into its models' parameters: SD 1.x's LDM layout, or SDXL's
/// (`conditioner.embedders.0.transformer.*`, CLIP ViT-L in transformers names, and
/// `conditioner.embedders.1.model.*`, OpenCLIP ViT-bigG in OpenCLIP's names).
enum SingleFile {
    static func split(_ file: SafeTensorsFile) throws
        -> (unet: ParameterStore, vae: ParameterStore, textEncoder: ParameterStore, textEncoder2: ParameterStore?) {
        var unet: [String: ParameterStore.Location] = [:]
        var vae: [String: ParameterStore.Location] = [:]
        var text: [String: ParameterStore.Location] = [:]
        var text2: [String: ParameterStore.Location] = [:]
        for key in file.names {
            let location = ParameterStore.Location(file: file, key: key)
            if let rest = key.dropPrefix("model.diffusion_model.") {
                unet[rest] = location
            } else if let rest = key.dropPrefix("first_stage_model."), !rest.hasPrefix("loss.") {
                vae[rest] = location
            } else if let rest = key.dropPrefix("cond_stage_model.transformer.text_model.") ?? key.dropPrefix("conditioner.embedders.0.transformer.text_model.") {
                text["text_model." + rest] = location
            } else if let rest = key.dropPrefix("cond_stage_model.transformer.") ?? key.dropPrefix("conditioner.embedders.0.transformer.") {
                text["text_model." + rest] = location
            } else if let rest = key.dropPrefix("conditioner.embedders.1.model.") {
                for (name, part) in try openCLIPNames(rest, file: file, key: key) {
                    text2[name] = ParameterStore.Location(file: file, key: key, part: part)
                }
            } else if Checkpoint.ignoredSingleFileKeys.contains(where: key.hasPrefix) {
                continue
            } else if key.hasPrefix("conditioner.embedders.0.model.") {
                throw CheckpointError.unsupportedModel(path: file.path, reason: "the SDXL refiner ('\(key)': OpenCLIP alone); sdflow runs SDXL base models")
            } else if key.hasPrefix("cond_stage_model.model.") {
                throw CheckpointError.unsupportedModel(path: file.path, reason: "an SD 2.x checkpoint (OpenCLIP text encoder '\(key)'); sdflow runs SD 1.x and SDXL")
            } else {
                throw CheckpointError.notACheckpoint(path: file.path, reason: "unexpected tensor '\(key)'")
            }
        }
        if unet.isEmpty && vae.isEmpty && text.isEmpty {
            throw CheckpointError.notACheckpoint(path: file.path, reason: "no model.diffusion_model.*, first_stage_model.* or cond_stage_model.* tensors")
        }
        return (ParameterStore(component: "UNet", locations: unet),
                ParameterStore(component: "VAE", locations: vae),
                ParameterStore(component: "text encoder", locations: text),
                text2.isEmpty ? nil : ParameterStore(component: "text encoder 2", locations: text2))
    }

    /// The transformers names of an OpenCLIP text-encoder tensor (`rest` after the model's prefix):
    /// the fused q/k/v projection gives three, by rows; the text projection is stored transposed.
    static func openCLIPNames(_ rest: String, file: SafeTensorsFile, key: String) throws -> [(String, ParameterStore.Location.Part?)] {
        switch rest {
        case "token_embedding.weight": return [("text_model.embeddings.token_embedding.weight", nil)]
        case "positional_embedding": return [("text_model.embeddings.position_embedding.weight", nil)]
        case "ln_final.weight", "ln_final.bias": return [("text_model.final_layer_norm." + rest.dropFirst("ln_final.".count), nil)]
        case "text_projection": return [("text_projection.weight", .transposed)]
        case "logit_scale": return []
        default: break
        }
        guard let inner = rest.dropPrefix("transformer.resblocks."), let dot = inner.firstIndex(of: "."), let layer = Int(inner[..<dot]) else {
            throw CheckpointError.notACheckpoint(path: file.path, reason: "unexpected tensor '\(key)' in the second text encoder")
        }
        let name = String(inner[inner.index(after: dot)...]), base = "text_model.encoder.layers.\(layer)."
        if name == "attn.in_proj_weight" || name == "attn.in_proj_bias" {
            guard let rows = file.entries[key]?.shape.first, rows % 3 == 0 else {
                throw CheckpointError.notACheckpoint(path: file.path, reason: "'\(key)' is not three stacked projections")
            }
            let width = rows / 3, kind = name.hasSuffix("weight") ? "weight" : "bias"
            return ["q", "k", "v"].enumerated().map { i, p in (base + "self_attn.\(p)_proj.\(kind)", .rows((i * width)..<((i + 1) * width))) }
        }
        let renamed = [("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."),
                       ("attn.out_proj.", "self_attn.out_proj.")]
        guard let (from, to) = renamed.first(where: { name.hasPrefix($0.0) }) else {
            throw CheckpointError.notACheckpoint(path: file.path, reason: "unexpected tensor '\(key)' in the second text encoder")
        }
        return [(base + to + name.dropFirst(from.count), nil)]
    }
}

extension String {
    /// The rest of the string after `prefix`, or nil when it does not start with it.
    func dropPrefix(_ prefix: String) -> String? {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil
    }
}
