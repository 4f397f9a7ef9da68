/// The correspondence between diffusers module paths and the original LDM module paths,
/// generated from a model's config by walking the same structure the models are built from.
///
/// Each entry maps a diffusers module ("down_blocks.0.resnets.1") to its LDM module
/// ("input_blocks.2.0"); a parameter name is translated by its longest mapped module prefix,
/// keeping the leaf ("weight", "bias"). Modules whose internals share names (the spatial
/// transformers) are mapped as a whole.
public struct DiffusersKeyMap: Sendable {
    /// diffusers module path -> LDM module path.
    public let modules: [String: String]

    /// The LDM name of a diffusers parameter name, or nil when no module prefix matches.
    public func ldmName(_ diffusersName: String) -> String? {
        var prefix = Substring(diffusersName)
        var rest = ""
        while true {
            if let mapped = modules[String(prefix)] { return rest.isEmpty ? mapped : mapped + "." + rest }
            guard let dot = prefix.lastIndex(of: ".") else { return nil }
            let leaf = prefix[prefix.index(after: dot)...]
            rest = rest.isEmpty ? String(leaf) : leaf + "." + rest
            prefix = prefix[..<dot]
        }
    }

    // MARK: - UNet

    /// The map for a UNet2DConditionModel with `config`.
    public static func unet(_ c: UNet.Config) -> DiffusersKeyMap {
        var m: [String: String] = [
            "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "time_embedding.cond_proj": "time_embed.cond_proj",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
        ]
        func resnet(_ d: String, _ l: String) {
            for (dn, ln) in [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
                             ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")] {
                m["\(d).\(dn)"] = "\(l).\(ln)"
            }
        }
        let r = c.resBlocksPerLevel
        var index = 1
        for level in 0..<c.levels {
            for j in 0..<r {
                resnet("down_blocks.\(level).resnets.\(j)", "input_blocks.\(index).0")
                if c.attentionLevels[level] { m["down_blocks.\(level).attentions.\(j)"] = "input_blocks.\(index).1" }
                index += 1
            }
            if level != c.levels - 1 {
                m["down_blocks.\(level).downsamplers.0.conv"] = "input_blocks.\(index).0.op"
                index += 1
            }
        }
        resnet("mid_block.resnets.0", "middle_block.0")
        m["mid_block.attentions.0"] = "middle_block.1"
        resnet("mid_block.resnets.1", "middle_block.2")
        index = 0
        for (u, level) in stride(from: c.levels - 1, through: 0, by: -1).enumerated() {
            for j in 0...r {
                resnet("up_blocks.\(u).resnets.\(j)", "output_blocks.\(index).0")
                if c.attentionLevels[level] { m["up_blocks.\(u).attentions.\(j)"] = "output_blocks.\(index).1" }
                if level != 0 && j == r {
                    m["up_blocks.\(u).upsamplers.0.conv"] = "output_blocks.\(index).\(c.attentionLevels[level] ? 2 : 1).conv"
                }
                index += 1
            }
        }
        return DiffusersKeyMap(modules: m)
    }

    // MARK: - ControlNet

    /// The map for a ControlNetModel: the UNet's way down and middle, the condition embedding
    /// (`controlnet_cond_embedding.conv_in`, `.blocks.K`, `.conv_out` -> `input_hint_block.0`,
    /// `.2(K+1)`, the last) and the zero convolutions (`controlnet_down_blocks.N` -> `zero_convs.N.0`,
    /// `controlnet_mid_block` -> `middle_block_out.0`).
    public static func controlNet(_ c: ControlNet.Config) -> DiffusersKeyMap {
        var m = unet(c.unet).modules.filter { !$0.key.hasPrefix("up_blocks.") && $0.key != "conv_norm_out" && $0.key != "conv_out" }
        let blocks = 2 * (c.hintWidths.count - 1)
        m["controlnet_cond_embedding.conv_in"] = "input_hint_block.0"
        for k in 0..<blocks { m["controlnet_cond_embedding.blocks.\(k)"] = "input_hint_block.\(2 * (k + 1))" }
        m["controlnet_cond_embedding.conv_out"] = "input_hint_block.\(2 * (blocks + 1))"
        let skips = 1 + c.unet.levels * c.unet.resBlocksPerLevel + c.unet.levels - 1
        for n in 0..<skips { m["controlnet_down_blocks.\(n)"] = "zero_convs.\(n).0" }
        m["controlnet_mid_block"] = "middle_block_out.0"
        return DiffusersKeyMap(modules: m)
    }

    // MARK: - VAE

    /// The map for an AutoencoderKL with `config`. VAE attention is mapped with both the
    /// current (`to_q`, `group_norm`) and the pre-0.14 diffusers names (`query`, `proj_attn`).
    public static func vae(_ c: AutoencoderKL.Config) -> DiffusersKeyMap {
        var m: [String: String] = ["quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"]
        func resnet(_ d: String, _ l: String) {
            for (dn, ln) in [("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
                             ("conv_shortcut", "nin_shortcut")] {
                m["\(d).\(dn)"] = "\(l).\(ln)"
            }
        }
        func middle(_ part: String) {
            resnet("\(part).mid_block.resnets.0", "\(part).mid.block_1")
            resnet("\(part).mid_block.resnets.1", "\(part).mid.block_2")
            for (dn, ln) in [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"),
                             ("query", "q"), ("key", "k"), ("value", "v"), ("proj_attn", "proj_out")] {
                m["\(part).mid_block.attentions.0.\(dn)"] = "\(part).mid.attn_1.\(ln)"
            }
            m["\(part).conv_in"] = "\(part).conv_in"
            m["\(part).conv_out"] = "\(part).conv_out"
            m["\(part).conv_norm_out"] = "\(part).norm_out"
        }
        middle("encoder")
        middle("decoder")
        for level in 0..<c.levels {
            for j in 0..<c.resBlocksPerLevel {
                resnet("encoder.down_blocks.\(level).resnets.\(j)", "encoder.down.\(level).block.\(j)")
            }
            if level != c.levels - 1 {
                m["encoder.down_blocks.\(level).downsamplers.0.conv"] = "encoder.down.\(level).downsample.conv"
            }
        }
        for (u, level) in stride(from: c.levels - 1, through: 0, by: -1).enumerated() {
            for j in 0...c.resBlocksPerLevel {
                resnet("decoder.up_blocks.\(u).resnets.\(j)", "decoder.up.\(level).block.\(j)")
            }
            if level != 0 { m["decoder.up_blocks.\(u).upsamplers.0.conv"] = "decoder.up.\(level).upsample.conv" }
        }
        return DiffusersKeyMap(modules: m)
    }

    // MARK: - Text encoder

    /// transformers' CLIPTextModel uses the same names as the LDM checkpoint under `text_model`;
    /// transformers 5 saves them without the `text_model.` prefix.
    public static let textEncoder = DiffusersKeyMap(modules: [
        "text_model": "text_model", "embeddings": "text_model.embeddings", "encoder": "text_model.encoder",
        "final_layer_norm": "text_model.final_layer_norm", "text_projection": "text_projection",
    ])
}
