import Foundation
import SafeTensors

/// An SD 1.x ControlNet as users have it:
///
/// - A1111 / lllyasviel single files (`control_v11p_sd15_canny.safetensors`, `.pth`): LDM names,
///   with or without the `control_model.` prefix (a whole ControlNet 1.0 checkpoint's UNet and other
///   parts are ignored);
/// - a single file with diffusers names (`diffusion_pytorch_model.safetensors` copied out);
/// - a diffusers folder (`config.json` and weights, F32, F16 or BF16).
///
/// Single files carry no config: the widths and levels come from the shapes, the GroupNorm groups
/// and attention heads (which shapes do not show) from the UNet the net is used with, the shuffle
/// net's global pooling from the file name (`*_shuffle*`, as ComfyUI decides it). ControlNets of other
/// model families and other control models (Control-LoRA, T2I-Adapter, ...) are refused by name.
public struct ControlNetFile: Sendable {
    public let path: String
    public let config: ControlNet.Config
    let store: ParameterStore
    /// Whether `config` came from a config.json (else from shapes, completed by the UNet's).
    let configured: Bool

    /// Opens `path` (its weights load with `load()`).
    public init(path: String) throws {
        self.path = path
        if let folder = try DiffusersFolder.componentFolder(path, subfolder: "controlnet",
                                                             needs: "a ControlNet folder needs config.json (diffusers' ControlNetModel)") {
            let config = try Self.diffusersConfig(folder + "/config.json")
            self.config = config
            configured = true
            store = try DiffusersFolder.store("ControlNet", folder: folder, weights: "diffusion_pytorch_model", map: .controlNet(config), ignoring: [])
            try Self.checkFamily(store.names.map { ($0, store.shape($0) ?? []) }, path: path)
        } else {
            let file = try SafeTensorsFile.weights(path: path)
            try Self.checkFamily(file.names.map { ($0, file.entries[$0]?.shape ?? []) }, path: path)
            var locations: [String: ParameterStore.Location] = [:]
            if file.names.contains("controlnet_cond_embedding.conv_in.weight") {
                let map = DiffusersKeyMap.controlNet(Self.layout(ofDiffusersNames: file.names))
                for name in file.names {
                    guard let ldm = map.ldmName(name) else {
                        throw CheckpointError.unexpectedTensor(component: "ControlNet", name: name, file: path, count: 1)
                    }
                    locations[ldm] = .init(file: file, key: name)
                }
            } else {
                let prefixed = file.names.contains("control_model.zero_convs.0.0.weight")
                for name in file.names {
                    if prefixed {
                        guard name.hasPrefix("control_model.") else { continue }  // a whole ControlNet 1.0 checkpoint's other parts
                        locations[String(name.dropFirst("control_model.".count))] = .init(file: file, key: name)
                    } else {
                        locations[name] = .init(file: file, key: name)
                    }
                }
            }
            store = ParameterStore(component: "ControlNet", locations: locations)
            var config = ControlNet.Config()
            config.unet = try ConfigInference.unetConfig(store, path: path)
            config.unet.outChannels = config.unet.inChannels
            (config.hintChannels, config.hintWidths) = try Self.hintLayout(store, path: path)
            let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent.lowercased()
            config.globalPool = name.hasSuffix("_shuffle") || name.hasSuffix("_shuffle_fp16")
            self.config = config
            configured = false
        }
        store.keepsHalfPrecision = true
    }

    /// Builds the net for a UNet of config `unet` (nil: as the file says) and checks that every
    /// tensor of the file was used. A net made for another UNet (other widths, levels or text
    /// width) is refused.
    public func load(for unet: UNet.Config? = nil) throws -> ControlNet {
        var config = self.config
        if let unet {
            let mine = config.unet
            guard mine.modelChannels == unet.modelChannels, mine.channelMultipliers == unet.channelMultipliers,
                  mine.attentionLevels == unet.attentionLevels, mine.resBlocksPerLevel == unet.resBlocksPerLevel,
                  mine.contextDimension == unet.contextDimension else {
                throw CheckpointError.unsupportedModel(path: path, reason: "a ControlNet for another UNet: its levels are \(mine.channelMultipliers.map { $0 * mine.modelChannels }) "
                    + "with \(mine.contextDimension)-wide text, the UNet's \(unet.channelMultipliers.map { $0 * unet.modelChannels }) with \(unet.contextDimension)")
            }
            if !configured {
                (config.unet.groups, config.unet.epsilon, config.unet.headsPerLevel) = (unet.groups, unet.epsilon, unet.headsPerLevel)
            }
        }
        let net = try ControlNet(config: config, parameters: store.scope(""))
        try store.checkAllUsed()
        return net
    }

    /// A diffusers ControlNetModel's config.json.
    static func diffusersConfig(_ path: String) throws -> ControlNet.Config {
        let json = try ConfigJSON(path: path)
        if let name = json.string("_class_name"), name != "ControlNetModel" {
            throw CheckpointError.unsupportedModel(path: path, reason: "a \(name), not an SD 1.x ControlNetModel")
        }
        let context = try json.int("cross_attention_dim", default: 1280)
        if let family = family(contextWidth: context) { throw CheckpointError.unsupportedModel(path: path, reason: family) }
        var config = ControlNet.Config()
        do {
            config.unet = try UNet.Config.diffusers(configPath: path, upBlocks: false)
        } catch CheckpointError.unsupportedModel(_, let reason) where reason.contains("addition_embed_type") {
            throw CheckpointError.unsupportedModel(path: path, reason: "an SDXL ControlNet (\(reason)); sdflow runs SD 1.x ControlNets")
        }
        config.unet.outChannels = config.unet.inChannels
        config.hintChannels = try json.int("conditioning_channels", default: 3)
        config.hintWidths = try json.ints("conditioning_embedding_out_channels", default: [16, 32, 96, 256])
        config.globalPool = try json.bool("global_pool_conditions", default: false)
        if let order = json.string("controlnet_conditioning_channel_order"), order != "rgb" {
            throw CheckpointError.unsupportedModel(path: path, reason: "controlnet_conditioning_channel_order '\(order)' (sdflow gives ControlNets RGB images)")
        }
        return config
    }

    /// What another model family's text width says (nil for SD 1.x's 768).
    static func family(contextWidth: Int) -> String? {
        switch contextWidth {
        case 1024: return "an SD 2.x ControlNet (1024-wide text context); sdflow runs SD 1.x ControlNets"
        case 2048: return "an SDXL ControlNet (2048-wide text context); sdflow runs SD 1.x ControlNets"
        default: return nil
        }
    }

    /// Refuses the files that are not SD 1.x ControlNets, saying what they are.
    static func checkFamily(_ tensors: [(name: String, shape: [Int])], path: String) throws {
        func refuse(_ reason: String) -> CheckpointError { .unsupportedModel(path: path, reason: reason) }
        let names = tensors.map(\.name)
        func has(_ part: String) -> Bool { names.contains { $0.contains(part) } }
        if has("lora_controlnet") { throw refuse("a Control-LoRA (not supported; use a full ControlNet)") }
        if has("lllite") { throw refuse("a ControlNet-LLLite (not supported)") }
        if has("control_add_embedding") || has("task_embedding") { throw refuse("a ControlNet-Union (not supported)") }
        if names.contains("difference") { throw refuse("a difference ControlNet (its weights are deltas to a UNet; not supported)") }
        if has("label_emb.") || has("add_embedding.") { throw refuse("an SDXL ControlNet; sdflow runs SD 1.x ControlNets") }
        let isControlNet = has("zero_convs.") || has("controlnet_down_blocks.") || has("controlnet_cond_embedding.")
        if !isControlNet {
            if names.contains(where: { $0.hasPrefix("body.") || $0.hasPrefix("adapter.") }) {
                throw refuse("a T2I-Adapter (not supported; use a ControlNet)")
            }
            if has("model.diffusion_model.") { throw refuse("a whole checkpoint, not a ControlNet: give it to load_checkpoint") }
            throw CheckpointError.notACheckpoint(path: path, reason: "not a ControlNet: no zero_convs or controlnet_down_blocks weights"
                                                 + (names.first.map { " (first tensor: '\($0)')" } ?? ""))
        }
        if let key = tensors.first(where: { $0.name.hasSuffix("attn2.to_k.weight") }), key.shape.count == 2,
           let family = family(contextWidth: key.shape[1]) {
            throw refuse(family)
        }
    }

    /// The control image's channels and the condition embedding's widths, from `input_hint_block`'s shapes.
    static func hintLayout(_ store: ParameterStore, path: String) throws -> (channels: Int, widths: [Int]) {
        guard let first = store.shape("input_hint_block.0.weight"), first.count == 4 else {
            throw CheckpointError.notACheckpoint(path: path, reason: "no input_hint_block.0.weight: not a ControlNet's condition embedding")
        }
        var widths = [first[0]]
        // Level L's stride-2 convolution is input_hint_block.(4L + 4); conv_out comes after the last.
        while let next = store.shape("input_hint_block.\(4 * widths.count).weight"), next.count == 4 { widths.append(next[0]) }
        return (first[1], widths)
    }

    /// A config with the levels, blocks and condition-embedding length that diffusers names show
    /// (enough to map them; the shapes then give the widths).
    static func layout(ofDiffusersNames names: [String]) -> ControlNet.Config {
        func indices(after prefix: String) -> Set<Int> {
            Set(names.compactMap { $0.dropPrefix(prefix)?.split(separator: ".").first.flatMap { Int($0) } })
        }
        var c = ControlNet.Config()
        let levels = Swift.max(indices(after: "down_blocks.").count, 1)
        c.unet.channelMultipliers = Array(repeating: 1, count: levels)
        c.unet.attentionLevels = (0..<levels).map { level in names.contains { $0.hasPrefix("down_blocks.\(level).attentions.") } }
        c.unet.headsPerLevel = Array(repeating: 8, count: levels)
        c.unet.resBlocksPerLevel = Swift.max(indices(after: "down_blocks.0.resnets.").count, 1)
        c.hintWidths = Array(repeating: 1, count: indices(after: "controlnet_cond_embedding.blocks.").count / 2 + 1)
        return c
    }
}
