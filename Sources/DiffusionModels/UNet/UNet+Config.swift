import Foundation

extension UNet {
    /// Hyperparameters of an SD 1.x UNet, in the terms of the original LDM `UNetModel`.
    public struct Config: Sendable, Equatable {
        /// Latent channels in (4, or 9 for inpainting checkpoints: latent + mask + masked-image latent).
        public var inChannels = 4
        /// Predicted noise channels.
        public var outChannels = 4
        /// Channels of the first level (`model_channels`; diffusers' `block_out_channels[0]`).
        public var modelChannels = 320
        /// Channels of each level as multiples of `modelChannels`.
        public var channelMultipliers = [1, 2, 4, 4]
        /// Whether each level has a spatial transformer after its ResBlocks.
        public var attentionLevels = [true, true, true, false]
        /// ResBlocks per level on the way down (the way up has one more).
        public var resBlocksPerLevel = 2
        /// Attention heads at each level (SD 1.x: 8 everywhere); the middle block uses the last.
        public var headsPerLevel = [8, 8, 8, 8]
        /// Transformer blocks of each level's spatial transformers (SDXL: 0, 2, 10); the middle
        /// block's has the last level's.
        public var transformerDepths = [1, 1, 1, 1]
        /// Width of the text conditioning (CLIP's hidden size).
        public var contextDimension = 768
        /// GroupNorm groups and epsilon of the ResBlocks.
        public var groups = 32
        public var epsilon: Float = 1e-5
        /// Spatial transformers project in and out with linear layers instead of 1x1 convolutions (SD 2.x style).
        public var linearProjection = false
        /// LCM-distilled UNets (`time_cond_proj_dim`): the guidance scale enters as a sinusoidal
        /// embedding of this width, projected and added to the timestep's (no classifier-free guidance).
        public var guidanceEmbeddingDimension: Int?
        /// SDXL (diffusers' `text_time`): the pooled text embedding and six size numbers (`time_ids`),
        /// each number as a sinusoid of `timeWidth`, projected from `inputWidth` (pooled + 6 x timeWidth)
        /// and added to the timestep embedding.
        public var addition: Addition?

        /// SDXL's added conditioning's widths.
        public struct Addition: Sendable, Equatable {
            public var timeWidth: Int
            public var inputWidth: Int
            public init(timeWidth: Int, inputWidth: Int) { (self.timeWidth, self.inputWidth) = (timeWidth, inputWidth) }
            /// The pooled text embedding's width.
            public var pooledWidth: Int { inputWidth - 6 * timeWidth }
        }

        public init() {}

        /// Stable Diffusion 1.5 (and 1.x).
        public static let sd15 = Config()

        /// Stable Diffusion 1.5 inpainting (9 input channels).
        public static var sd15Inpainting: Config {
            var c = Config.sd15
            c.inChannels = 9
            return c
        }

        /// Width of the timestep embedding (4 x modelChannels).
        public var timeEmbeddingDimension: Int { 4 * modelChannels }
        /// Channels at level `i`.
        public func channels(level i: Int) -> Int { modelChannels * channelMultipliers[i] }
        /// Number of levels (one downsampling between each pair).
        public var levels: Int { channelMultipliers.count }

        /// Reads a diffusers `unet/config.json` (UNet2DConditionModel); `upBlocks: false` for a
        /// ControlNetModel's, which has the way down only.
        public static func diffusers(configPath path: String, upBlocks: Bool = true) throws -> Config {
            let json = try ConfigJSON(path: path)
            var c = Config()
            c.inChannels = try json.int("in_channels", default: 4)
            c.outChannels = try json.int("out_channels", default: 4)
            (c.modelChannels, c.channelMultipliers) = try json.levels("block_out_channels", default: [320, 640, 1280, 1280])
            let levels = c.channelMultipliers.count
            let down = try json.strings("down_block_types", default: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])
            guard down.count == levels else {
                throw CheckpointError.invalidConfig(path: path, reason: "down_block_types has \(down.count) entries for \(levels) levels")
            }
            c.attentionLevels = try down.map { type in
                switch type {
                case "CrossAttnDownBlock2D": return true
                case "DownBlock2D": return false
                default: throw CheckpointError.unsupportedModel(path: path, reason: "down block type \(type)")
                }
            }
            let expectedUp = c.attentionLevels.reversed().map { $0 ? "CrossAttnUpBlock2D" : "UpBlock2D" }
            let up = upBlocks ? try json.strings("up_block_types", default: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
                              : expectedUp
            guard up == expectedUp else {
                throw CheckpointError.unsupportedModel(path: path, reason: "up_block_types \(up) do not mirror the down blocks (\(expectedUp))")
            }
            c.resBlocksPerLevel = try json.int("layers_per_block", default: 2)
            // diffusers' `attention_head_dim` is, for SD 1.x/2.x configs, the number of heads.
            let heads = json.has("num_attention_heads") ? "num_attention_heads" : "attention_head_dim"
            if let list = try? json.ints(heads, default: []), !list.isEmpty {
                guard list.count == levels else {
                    throw CheckpointError.invalidConfig(path: path, reason: "\(heads) has \(list.count) entries for \(levels) levels")
                }
                c.headsPerLevel = list
            } else {
                c.headsPerLevel = Array(repeating: try json.int(heads, default: 8), count: levels)
            }
            if let list = try? json.ints("transformer_layers_per_block", default: []), !list.isEmpty {
                guard list.count == levels else {
                    throw CheckpointError.invalidConfig(path: path, reason: "transformer_layers_per_block has \(list.count) entries for \(levels) levels")
                }
                c.transformerDepths = list
            } else {
                c.transformerDepths = Array(repeating: try json.int("transformer_layers_per_block", default: 1), count: levels)
            }
            c.contextDimension = try json.int("cross_attention_dim", default: 768)
            c.groups = try json.int("norm_num_groups", default: 32)
            c.epsilon = Float(try json.double("norm_eps", default: 1e-5))
            c.linearProjection = try json.bool("use_linear_projection", default: false)
            if json.has("time_cond_proj_dim"), let width = try? json.int("time_cond_proj_dim", default: 0), width > 0 {
                guard width % 2 == 0, width <= 4096 else {
                    throw CheckpointError.invalidConfig(path: path, reason: "time_cond_proj_dim \(width) is not an even width up to 4096")
                }
                c.guidanceEmbeddingDimension = width
            }
            if let type = json.string("addition_embed_type") {
                guard type == "text_time" else {
                    throw CheckpointError.unsupportedModel(path: path, reason: "addition_embed_type '\(type)' is not SDXL's text_time")
                }
                let time = try json.int("addition_time_embed_dim", default: 256)
                let input = try json.int("projection_class_embeddings_input_dim", default: 2816)
                guard time > 0, time % 2 == 0, input > 6 * time else {
                    throw CheckpointError.invalidConfig(path: path, reason: "addition_time_embed_dim \(time) and projection_class_embeddings_input_dim \(input) do not fit six time ids and a pooled text")
                }
                c.addition = Addition(timeWidth: time, inputWidth: input)
            }
            // Settings of other model families; upcast_attention needs nothing (attention is float32 already).
            for key in ["class_embed_type", "encoder_hid_dim_type"] where json.string(key) != nil {
                throw CheckpointError.unsupportedModel(path: path, reason: "\(key) '\(json.string(key)!)' is not SD 1.x conditioning")
            }
            if let mid = json.string("mid_block_type"), mid != "UNetMidBlock2DCrossAttn" {
                throw CheckpointError.unsupportedModel(path: path, reason: "mid_block_type \(mid)")
            }
            for key in ["center_input_sample", "dual_cross_attention", "only_cross_attention"] where try json.bool(key, default: false) {
                throw CheckpointError.unsupportedModel(path: path, reason: "\(key) is set")
            }
            if try !json.bool("flip_sin_to_cos", default: true) || json.double("freq_shift", default: 0) != 0 {
                throw CheckpointError.unsupportedModel(path: path, reason: "a timestep embedding other than SD's (flip_sin_to_cos, freq_shift 0)")
            }
            try c.validate(path: path)
            return c
        }

        /// Checks that the numbers describe a buildable UNet.
        func validate(path: String) throws {
            let n = channelMultipliers.count
            guard n >= 1, attentionLevels.count == n, headsPerLevel.count == n, transformerDepths.count == n, resBlocksPerLevel >= 1,
                  transformerDepths.allSatisfy({ $0 >= 1 && $0 <= 64 }) else {
                throw CheckpointError.invalidConfig(path: path, reason: "levels, attention levels and heads disagree")
            }
            for i in 0..<n where channels(level: i) % groups != 0 || channels(level: i) % headsPerLevel[i] != 0 {
                throw CheckpointError.invalidConfig(path: path, reason: "level \(i) has \(channels(level: i)) channels, not divisible by \(groups) groups and \(headsPerLevel[i]) heads")
            }
        }
    }
}
