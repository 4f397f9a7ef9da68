import Foundation
import SafeTensors

/// A full autoencoder kept apart from a checkpoint, as users have it next to their models
/// (A1111's "SD VAE", ComfyUI's VAELoader), in each layout they meet:
///
/// - a single file with LDM names (`vae-ft-mse-840000-ema-pruned.safetensors` or its `.ckpt`:
///   `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`, possibly under
///   `first_stage_model.`, with `loss.*` and `model_ema.*` leftovers ignored);
/// - a single file with diffusers names (`encoder.down_blocks.*`, a copied
///   `diffusion_pytorch_model.safetensors`); its levels are read from the shapes;
/// - a diffusers `vae/` folder (`config.json` and weights), or a pipeline folder holding one.
///
/// Single files carry no config: the levels and widths come from the shapes, the rest (32
/// GroupNorm groups, scaling factor 0.18215) is SD 1.x's.
public struct VAEFile: Sendable {
    public let path: String
    public let config: AutoencoderKL.Config
    let store: ParameterStore

    /// Key prefixes of single files that are not weights of the autoencoder.
    static let ignoredPrefixes = ["loss.", "model_ema.", "first_stage_model.loss."]

    /// Opens `path`; `configOverride` replaces the config a single file's shapes give.
    public init(path: String, config configOverride: AutoencoderKL.Config? = nil) throws {
        self.path = path
        if let folder = try DiffusersFolder.componentFolder(path, subfolder: "vae", needs: "a VAE folder needs config.json (or vae/config.json)") {
            let config = try configOverride ?? AutoencoderKL.Config.diffusers(configPath: folder + "/config.json")
            self.config = config
            store = try DiffusersFolder.store("VAE", folder: folder, weights: "diffusion_pytorch_model", map: .vae(config), ignoring: [])
        } else {
            let file = try SafeTensorsFile.weights(path: path)
            if file.names.contains(where: { $0.hasPrefix("model.diffusion_model.") }) {
                throw CheckpointError.notACheckpoint(path: path, reason: "a whole checkpoint, not a VAE: give it to load_checkpoint")
            }
            var names = file.names.filter { name in !VAEFile.ignoredPrefixes.contains(where: name.hasPrefix) }
            let prefix = !names.isEmpty && names.allSatisfy({ $0.hasPrefix("first_stage_model.") }) ? "first_stage_model." : ""
            names = names.map { String($0.dropFirst(prefix.count)) }
            guard names.contains("encoder.conv_in.weight") || names.contains("decoder.conv_in.weight") else {
                throw CheckpointError.notACheckpoint(path: path, reason: "not a full VAE: no encoder.conv_in/decoder.conv_in weights"
                                                     + (names.first.map { " (first tensor: '\($0)')" } ?? ""))
            }
            // diffusers names are mapped to LDM ones first; the levels come from the LDM names' shapes either way.
            let diffusersNames = names.contains { $0.contains(".down_blocks.") || $0.contains(".up_blocks.") }
            let map = diffusersNames ? DiffusersKeyMap.vae(configOverride ?? VAEFile.layout(ofDiffusersNames: names)) : nil
            var locations: [String: ParameterStore.Location] = [:]
            for name in names {
                guard let ldm = map == nil ? name : map!.ldmName(name) else {
                    throw CheckpointError.unexpectedTensor(component: "VAE", name: name, file: path, count: 1)
                }
                locations[ldm] = .init(file: file, key: prefix + name)
            }
            store = ParameterStore(component: "VAE", locations: locations)
            config = try configOverride ?? ConfigInference.vaeConfig(store, path: path)
        }
        store.keepsHalfPrecision = true
    }

    /// Builds the autoencoder and checks that every tensor of the file was used.
    public func load() throws -> AutoencoderKL {
        let vae = try AutoencoderKL(config: config, parameters: store.scope(""))
        try store.checkAllUsed()
        return vae
    }

    /// A config with the level and block counts that diffusers names show (their widths are not
    /// needed to map the names to LDM ones, which `ConfigInference` then reads the sizes from).
    static func layout(ofDiffusersNames names: [String]) -> AutoencoderKL.Config {
        func indices(after prefix: String) -> Int {
            Set(names.compactMap { $0.dropPrefix(prefix)?.split(separator: ".").first.flatMap { Int($0) } }).count
        }
        var c = AutoencoderKL.Config.sd15
        c.channelMultipliers = Array(repeating: 1, count: Swift.max(indices(after: "encoder.down_blocks."), 1))
        c.resBlocksPerLevel = Swift.max(indices(after: "encoder.down_blocks.0.resnets."), 1)
        return c
    }
}
