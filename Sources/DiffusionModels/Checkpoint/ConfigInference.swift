/// Infers the model configs of a single-file LDM checkpoint from its tensor shapes.
///
/// Widths, levels, block counts, the context width and the input channels (4, or 9 for
/// inpainting) are read from the shapes. Attention head counts are not visible in the weights:
/// the UNet gets SD 1.x's 8 heads per level and the text encoder one head per 64 channels
/// (CLIP ViT-L/14: 12). Checkpoints of other families are recognised and refused.
enum ConfigInference {
    static func configs(unet: ParameterStore, vae: ParameterStore, textEncoder: ParameterStore, textEncoder2: ParameterStore? = nil,
                        path: String) throws -> Checkpoint.Configs {
        var configs = Checkpoint.Configs(unet: try unetConfig(unet, path: path), vae: try vaeConfig(vae, path: path),
                                         textEncoder: try textConfig(textEncoder, path: path))
        // SDXL: the second encoder (OpenCLIP ViT-bigG: GELU, a text projection), the UNet's added
        // conditioning (its pooled part is that projection's width), 64-wide attention heads and
        // the VAE's scaling factor, none of which the shapes alone give.
        if let textEncoder2, let projection = shape(textEncoder2, "text_projection.weight", rank: 2) {
            var second = try textConfig(textEncoder2, path: path)
            second.quickGELU = false
            second.projectionWidth = projection[0]
            configs.textEncoder2 = second
            guard let label = shape(unet, "label_emb.0.0.weight", rank: 2), (label[1] - projection[0]) > 0, (label[1] - projection[0]) % 6 == 0 else {
                throw CheckpointError.notACheckpoint(path: path, reason: "an SDXL text encoder without the UNet's added conditioning (label_emb)")
            }
            configs.unet.addition = UNet.Config.Addition(timeWidth: (label[1] - projection[0]) / 6, inputWidth: label[1])
            configs.unet.headsPerLevel = (0..<configs.unet.levels).map { Swift.max(1, configs.unet.channels(level: $0) / 64) }
            configs.vae.scalingFactor = 0.13025
        }
        return configs
    }

    static func unetConfig(_ s: ParameterStore, path: String) throws -> UNet.Config {
        var c = UNet.Config.sd15
        guard let convIn = shape(s, "input_blocks.0.0.weight", rank: 4) else { return c }  // no UNet: loading it will say so
        c.inChannels = convIn[1]
        c.modelChannels = convIn[0]
        if let out = shape(s, "out.2.weight", rank: 4) { c.outChannels = out[0] }
        if let projection = shape(s, "time_embed.cond_proj.weight", rank: 2), projection[1] % 2 == 0 {
            c.guidanceEmbeddingDimension = projection[1]  // an LCM-distilled UNet
        }
        // Walk input_blocks: ResBlocks (in_layers) and downsamplers (op) give levels and widths.
        var multipliers: [Int] = [], attention: [Bool] = [], resBlocks: [Int] = []
        var current = 0, currentAttention = false
        var index = 1
        while true {
            if let conv = s.shape("input_blocks.\(index).0.in_layers.2.weight") {
                let multiplier = try widthMultiplier(conv, of: "input_blocks.\(index).0.in_layers.2.weight", base: c.modelChannels,
                                                     part: "UNet", path: path)
                if current == 0 { multipliers.append(multiplier) }
                current += 1
                if s.contains("input_blocks.\(index).1.norm.weight") { currentAttention = true }
            } else if s.contains("input_blocks.\(index).0.op.weight") {
                resBlocks.append(current)
                attention.append(currentAttention)
                current = 0
                currentAttention = false
            } else {
                break
            }
            index += 1
        }
        if current > 0 {
            resBlocks.append(current)
            attention.append(currentAttention)
        }
        guard !multipliers.isEmpty, Set(resBlocks).count == 1, multipliers.count == attention.count else {
            throw CheckpointError.notACheckpoint(path: path, reason: "the UNet's input blocks do not form SD 1.x levels")
        }
        c.channelMultipliers = multipliers
        c.attentionLevels = attention
        c.resBlocksPerLevel = resBlocks[0]
        c.headsPerLevel = Array(repeating: 8, count: multipliers.count)
        if let key = shape(s, "middle_block.1.transformer_blocks.0.attn2.to_k.weight", rank: 2) {
            c.contextDimension = key[1]
            if key[1] == 1024 {
                throw CheckpointError.unsupportedModel(path: path, reason: "an SD 2.x UNet (1024-wide text context); sdflow runs SD 1.x and SDXL")
            }
        }
        // Transformer blocks per level: those of the level's first attention block (1 where it has none).
        var firstBlock = 1
        c.transformerDepths = (0..<multipliers.count).map { level in
            defer { firstBlock += resBlocks[0] + 1 }
            var depth = 0
            while s.contains("input_blocks.\(firstBlock).1.transformer_blocks.\(depth).norm1.weight") { depth += 1 }
            return Swift.max(depth, 1)
        }
        if let projection = s.shape("middle_block.1.proj_in.weight") { c.linearProjection = projection.count == 2 }
        return c
    }

    static func vaeConfig(_ s: ParameterStore, path: String) throws -> AutoencoderKL.Config {
        var c = AutoencoderKL.Config.sd15
        guard let convIn = shape(s, "encoder.conv_in.weight", rank: 4) else { return c }
        c.imageChannels = convIn[1]
        c.baseChannels = convIn[0]
        var multipliers: [Int] = []
        while let conv = s.shape("encoder.down.\(multipliers.count).block.0.conv1.weight") {
            multipliers.append(try widthMultiplier(conv, of: "encoder.down.\(multipliers.count).block.0.conv1.weight",
                                                   base: c.baseChannels, part: "VAE", path: path))
        }
        var blocks = 0
        while s.contains("encoder.down.0.block.\(blocks).conv1.weight") { blocks += 1 }
        guard !multipliers.isEmpty, blocks > 0 else {
            throw CheckpointError.notACheckpoint(path: path, reason: "the VAE's encoder levels are not recognisable")
        }
        c.channelMultipliers = multipliers
        c.resBlocksPerLevel = blocks
        if let post = shape(s, "post_quant_conv.weight", rank: 4) { c.latentChannels = post[0] }
        return c
    }

    static func textConfig(_ s: ParameterStore, path: String) throws -> CLIPTextEncoder.Config {
        var c = CLIPTextEncoder.Config.sd15
        guard let tokens = shape(s, "text_model.embeddings.token_embedding.weight", rank: 2) else { return c }
        c.vocabularySize = tokens[0]
        c.width = tokens[1]
        c.heads = Swift.max(1, c.width / 64)
        if let positions = shape(s, "text_model.embeddings.position_embedding.weight", rank: 2) { c.maxPositions = positions[0] }
        if let fc1 = shape(s, "text_model.encoder.layers.0.mlp.fc1.weight", rank: 2) { c.intermediateWidth = fc1[0] }
        var layers = 0
        while s.contains("text_model.encoder.layers.\(layers).layer_norm1.weight") { layers += 1 }
        c.layers = layers
        return c
    }

    /// A level's width (`shape[0]` of tensor `name`) over the model's base width, which it must be a
    /// positive multiple of.
    static func widthMultiplier(_ shape: [Int], of name: String, base: Int, part: String, path: String) throws -> Int {
        guard let width = shape.first, width > 0, width % base == 0 else {
            throw CheckpointError.notACheckpoint(path: path, reason: "\(name) has shape \(shape), not a multiple of the \(part)'s \(base) channels")
        }
        return width / base
    }

    /// The shape of `name` when it has `rank` dimensions, all positive; nil when it is missing or
    /// has another shape (the defaults are kept, and loading the part then names the tensor).
    static func shape(_ s: ParameterStore, _ name: String, rank: Int) -> [Int]? {
        guard let shape = s.shape(name), shape.count == rank, shape.allSatisfy({ $0 > 0 }) else { return nil }
        return shape
    }
}
