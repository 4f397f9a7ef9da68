import Foundation
import SafeTensors
import TensorCore

/// The SD 1.x variational autoencoder (LDM's `AutoencoderKL`): images in [-1, 1] to latents
/// 8x smaller (for SD 1.x's four levels) and back. Parameters by LDM names under
/// `first_stage_model.`. The scaling factor (0.18215 for SD 1.x) is applied here and only here:
/// `encode` returns scaled latents and `decode` expects them.
public struct AutoencoderKL: Sendable {
    /// Hyperparameters of the autoencoder.
    public struct Config: Sendable, Equatable {
        /// Image channels.
        public var imageChannels = 3
        /// Latent channels.
        public var latentChannels = 4
        /// Channels of the first level.
        public var baseChannels = 128
        /// Channels of each level as multiples of `baseChannels`.
        public var channelMultipliers = [1, 2, 4, 4]
        /// ResBlocks per encoder level (the decoder has one more).
        public var resBlocksPerLevel = 2
        /// GroupNorm groups (epsilon 1e-6 throughout).
        public var groups = 32
        /// Latents are scaled by this after encoding and divided by it before decoding.
        public var scalingFactor: Float = 0.18215

        public init() {}

        /// SD 1.x's autoencoder.
        public static let sd15 = Config()

        /// Channels at level `i`.
        public func channels(level i: Int) -> Int { baseChannels * channelMultipliers[i] }
        /// Levels (one 2x resampling between each pair).
        public var levels: Int { channelMultipliers.count }
        /// Image pixels per latent pixel along each axis.
        public var downscale: Int { 1 << (levels - 1) }

        /// Reads a diffusers `vae/config.json`.
        public static func diffusers(configPath path: String) throws -> Config {
            let json = try ConfigJSON(path: path)
            var c = Config()
            c.imageChannels = try json.int("in_channels", default: 3)
            guard try json.int("out_channels", default: 3) == c.imageChannels else {
                throw CheckpointError.unsupportedModel(path: path, reason: "in_channels and out_channels differ")
            }
            c.latentChannels = try json.int("latent_channels", default: 4)
            (c.baseChannels, c.channelMultipliers) = try json.levels("block_out_channels", default: [128, 256, 512, 512])
            c.resBlocksPerLevel = try json.int("layers_per_block", default: 2)
            c.groups = try json.int("norm_num_groups", default: 32)
            c.scalingFactor = Float(try json.double("scaling_factor", default: 0.18215))
            if try !json.bool("mid_block_add_attention", default: true) {
                throw CheckpointError.unsupportedModel(path: path, reason: "a VAE without mid-block attention")
            }
            if try json.double("shift_factor", default: 0) != 0 {
                throw CheckpointError.unsupportedModel(path: path, reason: "shift_factor (not an SD 1.x VAE)")
            }
            return c
        }
    }

    public let config: Config
    let encoder: Encoder
    let decoder: Decoder
    let quantConv: Conv2d, postQuantConv: Conv2d

    /// Builds the autoencoder from `parameters` scoped at its root (`first_stage_model`).
    public init(config: Config, parameters p: ParameterScope) throws {
        self.config = config
        encoder = try Encoder(p["encoder"], config: config)
        decoder = try Decoder(p["decoder"], config: config)
        let z = config.latentChannels
        quantConv = try Conv2d(p["quant_conv"], inputs: 2 * z, outputs: 2 * z, kernel: 1)
        postQuantConv = try Conv2d(p["post_quant_conv"], inputs: z, outputs: z, kernel: 1)
    }

    /// The posterior of an image: mean and log-variance (clamped to [-30, 20]), both (N, Z, H/8, W/8), unscaled.
    public struct Posterior: Sendable {
        public let mean: Tensor
        public let logVariance: Tensor

        /// mean + exp(logvar / 2) * noise, as diffusers' `DiagonalGaussianDistribution.sample`.
        public func sample(noise: Tensor) -> Tensor {
            precondition(noise.shape == mean.shape, "VAE sample: noise \(noise.shape) for latents \(mean.shape)")
            let std = logVariance.map { Foundation.exp(0.5 * $0) }
            return mean + std * noise
        }
    }

    /// Image (N, 3, H, W) in [-1, 1] -> posterior over unscaled latents; with `tiling`, an image
    /// larger than one tile is encoded tile by tile and the moments blended (diffusers' tiled encode).
    public func posterior(_ image: Tensor, tiling: VAETiling? = nil) -> Posterior {
        BufferPool.trim()  // blocks kept from other models are the wrong sizes here; give them back first
        let moments = VAETiling.apply(tiling, to: image, unit: 1, scale: (1, config.downscale)) { quantConv(encoder($0)) }  // (N, 2Z, H/8, W/8)
        let halves = moments.chunked(2, axis: 1)
        return Posterior(mean: halves[0], logVariance: halves[1].map { Swift.min(Swift.max($0, -30), 20) })
    }

    /// Image (N, 3, H, W) in [-1, 1] -> scaled latents (N, Z, H/8, W/8): the posterior mean
    /// (as ComfyUI does), or a sample when `noise` (N, Z, H/8, W/8) is given (as diffusers' img2img).
    public func encode(_ image: Tensor, noise: Tensor? = nil, tiling: VAETiling? = nil) -> Tensor {
        let p = posterior(image, tiling: tiling)
        let latent = noise.map { p.sample(noise: $0) } ?? p.mean
        return latent.scaled(by: config.scalingFactor)
    }

    /// Scaled latents (N, Z, h, w) -> image (N, 3, 8h, 8w), nominally in [-1, 1] (not clamped);
    /// with `tiling`, latents larger than one tile are decoded tile by tile and blended.
    public func decode(_ latents: Tensor, tiling: VAETiling? = nil) -> Tensor {
        // Lower the peak: the UNet's kept blocks are the wrong sizes for the decoder, and the weights
        // of the UNet and text encoder need not stay resident (they fault back in, or are widened
        // again from an F16 file, when next used).
        let dropped = Weight.releaseWidenedCopies()
        BufferPool.trim()
        if dropped { BufferPool.releaseFreeHeapPages() }  // the copies under the pool's block size went to the C heap
        MappedFile.releaseResidentPages()
        let f = config.downscale
        return VAETiling.apply(tiling, to: latents.scaled(by: 1 / config.scalingFactor), unit: f, scale: (f, 1)) { decoder(postQuantConv($0)) }
    }
}

// MARK: - Blocks

/// The VAE's ResnetBlock: norm1-SiLU-conv1, norm2-SiLU-conv2, plus the input (1x1 `nin_shortcut` when widths differ).
struct VAEResBlock: Sendable {
    let norm1: GroupNorm, conv1: Conv2d, norm2: GroupNorm, conv2: Conv2d
    let shortcut: Conv2d?

    init(_ p: ParameterScope, inputs: Int, outputs: Int, groups: Int) throws {
        norm1 = try GroupNorm(p["norm1"], channels: inputs, groups: groups, epsilon: 1e-6)
        conv1 = try .same3x3(p["conv1"], inputs: inputs, outputs: outputs)
        norm2 = try GroupNorm(p["norm2"], channels: outputs, groups: groups, epsilon: 1e-6)
        conv2 = try .same3x3(p["conv2"], inputs: outputs, outputs: outputs)
        shortcut = inputs == outputs ? nil : try Conv2d(p["nin_shortcut"], inputs: inputs, outputs: outputs, kernel: 1)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = conv2(norm2(conv1(norm1(x, silu: true)), silu: true))
        h += shortcut?(x) ?? x
        return h
    }
}

/// The VAE's single-head self-attention over all pixels (`AttnBlock`): q, k, v and proj_out
/// are 1x1 convolutions in LDM checkpoints (linear layers in diffusers; both load).
struct VAEAttention: Sendable {
    let norm: GroupNorm
    let query: Linear, key: Linear, value: Linear, output: Linear

    init(_ p: ParameterScope, channels: Int, groups: Int) throws {
        norm = try GroupNorm(p["norm"], channels: channels, groups: groups, epsilon: 1e-6)
        query = try Linear(p["q"], inputs: channels, outputs: channels)
        key = try Linear(p["k"], inputs: channels, outputs: channels)
        value = try Linear(p["v"], inputs: channels, outputs: channels)
        output = try Linear(p["proj_out"], inputs: channels, outputs: channels)
    }

    /// x (N, C, H, W) -> (N, C, H, W)
    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let tokens = norm(x).reshaped([n, c, h * w]).transposedLastTwo()  // (N, HW, C)
        let attended = Tensor.attention(query: query(tokens), key: key(tokens), value: value(tokens), heads: 1)
        var out = output(attended).transposedLastTwo().reshaped([n, c, h, w])
        out += x
        return out
    }
}

/// The encoder: conv_in, levels of ResBlocks with stride-2 downsampling (padded right and
/// bottom), a middle of ResBlock-attention-ResBlock, then norm, SiLU and conv_out to 2Z moments.
struct Encoder: Sendable {
    let convIn: Conv2d
    let levels: [(blocks: [VAEResBlock], downsample: Conv2d?)]
    let middle1: VAEResBlock, middleAttention: VAEAttention, middle2: VAEResBlock
    let normOut: GroupNorm, convOut: Conv2d

    init(_ p: ParameterScope, config c: AutoencoderKL.Config) throws {
        convIn = try .same3x3(p["conv_in"], inputs: c.imageChannels, outputs: c.baseChannels)
        var width = c.baseChannels
        var levels: [(blocks: [VAEResBlock], downsample: Conv2d?)] = []
        for level in 0..<c.levels {
            let out = c.channels(level: level)
            var blocks: [VAEResBlock] = []
            for j in 0..<c.resBlocksPerLevel {
                blocks.append(try VAEResBlock(p["down"][level]["block"][j], inputs: width, outputs: out, groups: c.groups))
                width = out
            }
            let down = level == c.levels - 1 ? nil
                : try Conv2d(p["down"][level]["downsample"]["conv"], inputs: width, outputs: width, kernel: 3, stride: 2,
                             padding: Padding2D(top: 0, bottom: 1, left: 0, right: 1))
            levels.append((blocks, down))
        }
        self.levels = levels
        middle1 = try VAEResBlock(p["mid"]["block_1"], inputs: width, outputs: width, groups: c.groups)
        middleAttention = try VAEAttention(p["mid"]["attn_1"], channels: width, groups: c.groups)
        middle2 = try VAEResBlock(p["mid"]["block_2"], inputs: width, outputs: width, groups: c.groups)
        normOut = try GroupNorm(p["norm_out"], channels: width, groups: c.groups, epsilon: 1e-6)
        convOut = try .same3x3(p["conv_out"], inputs: width, outputs: 2 * c.latentChannels)
    }

    /// (N, 3, H, W) -> (N, 2Z, H/8, W/8)
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for level in levels {
            for block in level.blocks { h = block(h) }
            if let down = level.downsample { h = down(h) }
        }
        h = middle2(middleAttention(middle1(h)))
        return convOut(normOut(h, silu: true))
    }
}

/// The decoder: conv_in, the middle, levels (deepest first) of ResBlocks with nearest 2x
/// upsampling and a conv, then norm, SiLU and conv_out to image channels.
struct Decoder: Sendable {
    let convIn: Conv2d
    let middle1: VAEResBlock, middleAttention: VAEAttention, middle2: VAEResBlock
    /// Deepest level first.
    let levels: [(blocks: [VAEResBlock], upsample: Conv2d?)]
    let normOut: GroupNorm, convOut: Conv2d

    init(_ p: ParameterScope, config c: AutoencoderKL.Config) throws {
        var width = c.channels(level: c.levels - 1)
        convIn = try .same3x3(p["conv_in"], inputs: c.latentChannels, outputs: width)
        middle1 = try VAEResBlock(p["mid"]["block_1"], inputs: width, outputs: width, groups: c.groups)
        middleAttention = try VAEAttention(p["mid"]["attn_1"], channels: width, groups: c.groups)
        middle2 = try VAEResBlock(p["mid"]["block_2"], inputs: width, outputs: width, groups: c.groups)
        var levels: [(blocks: [VAEResBlock], upsample: Conv2d?)] = []
        for level in stride(from: c.levels - 1, through: 0, by: -1) {
            let out = c.channels(level: level)
            var blocks: [VAEResBlock] = []
            for j in 0...c.resBlocksPerLevel {
                blocks.append(try VAEResBlock(p["up"][level]["block"][j], inputs: width, outputs: out, groups: c.groups))
                width = out
            }
            let up = level == 0 ? nil : try Conv2d.same3x3(p["up"][level]["upsample"]["conv"], inputs: width, outputs: width)
            levels.append((blocks, up))
        }
        self.levels = levels
        normOut = try GroupNorm(p["norm_out"], channels: width, groups: c.groups, epsilon: 1e-6)
        convOut = try .same3x3(p["conv_out"], inputs: width, outputs: c.imageChannels)
    }

    /// (N, Z, h, w) -> (N, 3, 8h, 8w)
    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = middle2(middleAttention(middle1(convIn(z))))
        for level in levels {
            for block in level.blocks { h = block(h) }
            if let up = level.upsample { h = up.upsampling(h) }
        }
        return convOut(normOut(h, silu: true))
    }
}
