import Foundation
import TensorCore

/// The SD 1.x noise-prediction UNet (LDM's `UNetModel`; diffusers' `UNet2DConditionModel`).
///
/// Parameters are read by their LDM names under `model.diffusion_model.` (a diffusers folder
/// is mapped onto those names by `DiffusersKeyMap`). Predicts eps: (N, C, H, W) latents,
/// timesteps (N) and text context (N, 77, D) -> noise (N, 4, H, W). Any latent size works;
/// when it is not a multiple of 2^(levels-1), upsampling follows the skip sizes as diffusers does.
public struct UNet: Sendable {
    public let config: Config

    let timeEmbedding: TimestepEmbedding
    /// LCM-distilled UNets: the guidance embedding's projection onto the timestep embedding.
    let guidanceProjection: Linear?
    /// SDXL: the projection of the pooled text and the embedded time ids (`label_emb.0.0`, SiLU, `label_emb.0.2`).
    let additionEmbedding: (Linear, Linear)?
    let encoder: UNetEncoder
    let outputBlocks: [Block]
    let normOut: GroupNorm, convOut: Conv2d

    /// One entry of `input_blocks` / `output_blocks`: a ResBlock with an optional spatial
    /// transformer, or a lone downsampling convolution; output blocks may end in an upsampler.
    struct Block: Sendable {
        var resBlock: ResBlock?
        var attention: SpatialTransformer?
        var downsample: Conv2d?
        var upsample: Conv2d?
    }

    /// Builds the UNet from `parameters` scoped at the UNet's root (`model.diffusion_model`).
    public init(config: Config, parameters p: ParameterScope) throws {
        try config.validate(path: p.store.component)
        self.config = config
        let c = config
        timeEmbedding = try TimestepEmbedding(p["time_embed"], config: c)
        guidanceProjection = try c.guidanceEmbeddingDimension.map {
            try Linear(p["time_embed"]["cond_proj"], inputs: $0, outputs: c.modelChannels, bias: false)
        }
        additionEmbedding = try c.addition.map {
            (try Linear(p["label_emb"][0][0], inputs: $0.inputWidth, outputs: c.timeEmbeddingDimension),
             try Linear(p["label_emb"][0][2], inputs: c.timeEmbeddingDimension, outputs: c.timeEmbeddingDimension))
        }
        encoder = try UNetEncoder(config: c, parameters: p)

        // Up: per level (deepest first), resBlocksPerLevel + 1 ResBlocks over [h, skip], then a 2x upsampler.
        var skipWidths = encoder.skipWidths
        var width = skipWidths.last ?? c.modelChannels
        var outputs: [Block] = []
        for level in stride(from: c.levels - 1, through: 0, by: -1) {
            let out = c.channels(level: level)
            for r in 0...c.resBlocksPerLevel {
                let q = p["output_blocks"][outputs.count]
                let skip = skipWidths.removeLast()
                var block = Block(resBlock: try UNetEncoder.resBlock(q[0], c, width + skip, out))
                width = out
                if c.attentionLevels[level] { block.attention = try UNetEncoder.transformer(q[1], c, out, level: level) }
                if level != 0 && r == c.resBlocksPerLevel {
                    let index = c.attentionLevels[level] ? 2 : 1
                    block.upsample = try .same3x3(q[index]["conv"], inputs: width, outputs: width)
                }
                outputs.append(block)
            }
        }
        outputBlocks = outputs
        normOut = try GroupNorm(p["out"][0], channels: width, groups: c.groups, epsilon: c.epsilon)
        convOut = try .same3x3(p["out"][2], inputs: width, outputs: c.outChannels)
    }

    /// diffusers' `get_guidance_scale_embedding`: w (N) -> (N, width), [sin, cos] of w x 1000 at
    /// frequencies exp(-i ln(10000) / (width/2 - 1)), in float32 in the reference's order.
    public static func guidanceEmbedding(_ w: [Float], width: Int) -> Tensor {
        let half = width / 2
        let step = Float(Foundation.log(10000.0)) / Float(half - 1)
        let frequencies = (0..<half).map { Foundation.exp(Float($0) * -step) }
        var result = Tensor(zeros: [w.count, width])
        let p = result.mutablePointer()
        for (row, value) in w.enumerated() {
            let scaled = value * 1000
            for i in 0..<half {
                p[row * width + i] = Foundation.sin(scaled * frequencies[i])
                p[row * width + half + i] = Foundation.cos(scaled * frequencies[i])
            }
        }
        return result
    }

    /// Predicts the noise: sample (N, inChannels, H, W), timesteps (N), context (N, S, D) -> (N, outChannels, H, W).
    /// `guidance` (N), for LCM-distilled UNets: the embedded guidance w (the pipeline's scale - 1).
    /// `control`: ControlNet residuals, added to the skips and to the middle block's output.
    /// `added`: SDXL's pooled text and time ids (required by SDXL UNets).
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], context: Tensor, guidance: [Float]? = nil,
                               control: ControlResiduals? = nil, added: AddedConditions? = nil) -> Tensor {
        precondition(sample.rank == 4 && sample.shape[1] == config.inChannels,
                     "UNet expects (N, \(config.inChannels), H, W) latents, got \(sample.shape)")
        precondition(timesteps.count == sample.shape[0] && context.shape[0] == sample.shape[0],
                     "UNet: batch of \(sample.shape[0]) with \(timesteps.count) timesteps and context \(context.shape)")
        // (N) -> (N, 320) sinusoidal -> (N, 1280)
        var timeFeatures = Tensor.timestepEmbedding(timesteps, dimension: config.modelChannels)  // (N, 320)
        if let guidanceProjection, let guidance, let width = config.guidanceEmbeddingDimension {
            precondition(guidance.count == sample.shape[0], "UNet: \(guidance.count) guidance values for a batch of \(sample.shape[0])")
            timeFeatures = timeFeatures + guidanceProjection(UNet.guidanceEmbedding(guidance, width: width))
        }
        var embedding = timeEmbedding(features: timeFeatures)  // (N, 1280)
        if let (linear1, linear2) = additionEmbedding, let addition = config.addition {
            guard let added else { preconditionFailure("an SDXL UNet needs the pooled text and time ids") }
            precondition(added.pooled.shape == [sample.shape[0], addition.pooledWidth] && added.timeIds.shape == [sample.shape[0], 6],
                         "UNet: pooled \(added.pooled.shape) and time ids \(added.timeIds.shape) for a batch of \(sample.shape[0])")
            // [pooled (N, P), each time id as a sinusoid (N, 6 x T)] -> (N, P + 6T) -> (N, 1280)
            let times = Tensor.timestepEmbedding(added.timeIds.scalars, dimension: addition.timeWidth)
                .reshaped([sample.shape[0], 6 * addition.timeWidth])
            embedding = embedding + linear2(linear1(Tensor.concatenate([added.pooled, times], axis: 1)).silu())
        }
        let activated = embedding.silu()

        var (h, skips) = encoder(sample, activated: activated, context: context)
        if let control {
            precondition(control.down.count == skips.count, "UNet: \(control.down.count) ControlNet residuals for \(skips.count) skips")
            for i in skips.indices { skips[i] = skips[i].addingResidual(control.down[i]) }
            h = h.addingResidual(control.middle)
        }
        for block in outputBlocks {
            h = Tensor.concatenate([h, skips.removeLast()], axis: 1)  // (N, C + skip, H, W)
            h = UNetEncoder.run(block, h, activated, context)
            if let upsample = block.upsample, let next = skips.last {
                // To the skip's size: twice the size, or one less where the encoder halved an odd size.
                h = next.shape[2] == 2 * h.shape[2] && next.shape[3] == 2 * h.shape[3]
                    ? upsample.upsampling(h) : upsample(h.resizedNearest(height: next.shape[2], width: next.shape[3]))
            }
        }
        return convOut(normOut(h, silu: true))
    }
}

/// SDXL's added conditioning of a UNet call: the second text encoder's pooled, projected output
/// (N, P) and the six size numbers per item (N, 6): original height and width, crop top and left,
/// target height and width (diffusers' `add_time_ids`).
public struct AddedConditions: Sendable {
    public var pooled: Tensor
    public var timeIds: Tensor

    public init(pooled: Tensor, timeIds: Tensor) {
        self.pooled = pooled
        self.timeIds = timeIds
    }

    /// The time ids of an image made at its own size, uncropped: [h, w, 0, 0, h, w].
    public static func timeIds(height: Int, width: Int) -> [Float] {
        [Float(height), Float(width), 0, 0, Float(height), Float(width)]
    }
}

/// What ControlNets add to a UNet call: one residual per skip (N, C_i, H_i, W_i) and one for the
/// middle block's output; a residual of spatial size 1x1 (globally pooled) is added at every position.
public struct ControlResiduals: Sendable {
    public var down: [Tensor]
    public var middle: Tensor

    public init(down: [Tensor], middle: Tensor) {
        self.down = down
        self.middle = middle
    }

    /// The sum of several nets' residuals (diffusers' MultiControlNetModel).
    public static func + (a: ControlResiduals, b: ControlResiduals) -> ControlResiduals {
        ControlResiduals(down: zip(a.down, b.down).map { $0.addingResidual($1) }, middle: a.middle.addingResidual(b.middle))
    }
}

/// The timestep embedding's MLP (`time_embed.0`, SiLU, `time_embed.2`): (N, modelChannels) -> (N, 4 x modelChannels).
struct TimestepEmbedding: Sendable {
    let linear1: Linear, linear2: Linear

    init(_ p: ParameterScope, config c: UNet.Config) throws {
        linear1 = try Linear(p[0], inputs: c.modelChannels, outputs: c.timeEmbeddingDimension)
        linear2 = try Linear(p[2], inputs: c.timeEmbeddingDimension, outputs: c.timeEmbeddingDimension)
    }

    func callAsFunction(features: Tensor) -> Tensor { linear2(linear1(features).silu()) }
}

/// The UNet's way down and its middle block (LDM's `input_blocks` and `middle_block`), which a
/// ControlNet has a copy of.
struct UNetEncoder: Sendable {
    let convIn: Conv2d
    let blocks: [UNet.Block]
    let middleResBlock1: ResBlock, middleAttention: SpatialTransformer, middleResBlock2: ResBlock
    /// The channels of each skip: conv_in's output, then each block's.
    let skipWidths: [Int]

    init(config c: UNet.Config, parameters p: ParameterScope) throws {
        convIn = try .same3x3(p["input_blocks"][0][0], inputs: c.inChannels, outputs: c.modelChannels)
        // Down: per level, resBlocksPerLevel ResBlocks (+ transformer), then a stride-2 conv.
        var skipWidths = [c.modelChannels]
        var inputs: [UNet.Block] = []
        var width = c.modelChannels
        for level in 0..<c.levels {
            let out = c.channels(level: level)
            for _ in 0..<c.resBlocksPerLevel {
                let q = p["input_blocks"][inputs.count + 1]
                var block = UNet.Block(resBlock: try Self.resBlock(q[0], c, width, out))
                if c.attentionLevels[level] { block.attention = try Self.transformer(q[1], c, out, level: level) }
                inputs.append(block)
                width = out
                skipWidths.append(width)
            }
            if level != c.levels - 1 {
                let q = p["input_blocks"][inputs.count + 1][0]["op"]
                inputs.append(UNet.Block(downsample: try Conv2d(q, inputs: width, outputs: width, kernel: 3, stride: 2, padding: .uniform(1))))
                skipWidths.append(width)
            }
        }
        blocks = inputs
        self.skipWidths = skipWidths
        middleResBlock1 = try Self.resBlock(p["middle_block"][0], c, width, width)
        middleAttention = try Self.transformer(p["middle_block"][1], c, width, level: c.levels - 1)
        middleResBlock2 = try Self.resBlock(p["middle_block"][2], c, width, width)
    }

    static func resBlock(_ q: ParameterScope, _ c: UNet.Config, _ inputs: Int, _ outputs: Int) throws -> ResBlock {
        try ResBlock(q, inputs: inputs, outputs: outputs, embedding: c.timeEmbeddingDimension, groups: c.groups, epsilon: c.epsilon)
    }

    static func transformer(_ q: ParameterScope, _ c: UNet.Config, _ width: Int, level: Int) throws -> SpatialTransformer {
        try SpatialTransformer(q, width: width, contextWidth: c.contextDimension, heads: c.headsPerLevel[level],
                               depth: c.transformerDepths[level], groups: c.groups, linearProjection: c.linearProjection)
    }

    /// sample (N, C, H, W) -> the middle block's output and the skips (conv_in's output, then each
    /// block's); `hint` (N, modelChannels, H, W), a ControlNet's condition, is added to conv_in's output.
    func callAsFunction(_ sample: Tensor, activated: Tensor, context: Tensor, hint: Tensor? = nil) -> (Tensor, [Tensor]) {
        var h = convIn(sample)
        if let hint { h += hint }
        var skips = [h]
        for block in blocks {
            h = Self.run(block, h, activated, context)
            skips.append(h)
        }
        h = middleResBlock1(h, activatedEmbedding: activated)
        h = middleAttention(h, context: context)
        h = middleResBlock2(h, activatedEmbedding: activated)
        return (h, skips)
    }

    static func run(_ block: UNet.Block, _ x: Tensor, _ activated: Tensor, _ context: Tensor) -> Tensor {
        if let downsample = block.downsample { return downsample(x) }
        var h = x
        if let resBlock = block.resBlock { h = resBlock(h, activatedEmbedding: activated) }
        if let attention = block.attention { h = attention(h, context: context) }
        return h
    }
}
