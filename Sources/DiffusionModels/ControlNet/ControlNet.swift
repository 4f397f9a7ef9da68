import Foundation
import TensorCore

/// A ControlNet (Zhang et al. 2023; diffusers' `ControlNetModel`, LDM's `ControlNet`): a copy of
/// the UNet's way down and middle that also sees a control image (edges, depth, ...), and gives a
/// residual for each of the UNet's skips and for its middle block through zero-initialised 1x1
/// convolutions.
///
/// Parameters are read by their LDM names (`input_hint_block`, `input_blocks`, `middle_block`,
/// `zero_convs`, `middle_block_out`; `ControlNetFile` maps diffusers names onto them).
public struct ControlNet: Sendable {
    /// The UNet-shaped part, and what is the ControlNet's own.
    public struct Config: Sendable, Equatable {
        public var unet = UNet.Config.sd15
        /// Channels of the control image (3: RGB).
        public var hintChannels = 3
        /// Widths of the condition embedding's levels (SD 1.x: 16, 32, 96, 256); each level after
        /// the first halves the size, so the control image is 2^(count - 1) times the latent.
        public var hintWidths = [16, 32, 96, 256]
        /// Residuals are averaged over the image (the shuffle ControlNet; diffusers' `global_pool_conditions`).
        public var globalPool = false

        public init() {}

        /// Pixels of the control image per latent cell.
        public var hintFactor: Int { 1 << (hintWidths.count - 1) }
    }

    public let config: Config
    let timeEmbedding: TimestepEmbedding
    /// The condition embedding: 3x3 convolutions with SiLU between, three of stride 2 for SD 1.x.
    let hintConvolutions: [Conv2d]
    let hintOut: Conv2d
    let encoder: UNetEncoder
    /// One 1x1 convolution per skip, and one for the middle.
    let zeroConvolutions: [Conv2d]
    let middleOut: Conv2d

    /// Builds the net from `parameters` scoped at its root (the LDM names without `control_model.`).
    public init(config: Config, parameters p: ParameterScope) throws {
        try config.unet.validate(path: p.store.component)
        guard config.hintWidths.count >= 1, config.hintWidths.allSatisfy({ $0 > 0 }), config.hintChannels > 0 else {
            throw CheckpointError.invalidConfig(path: p.store.component, reason: "no condition embedding widths")
        }
        self.config = config
        let c = config.unet
        timeEmbedding = try TimestepEmbedding(p["time_embed"], config: c)
        // input_hint_block: conv_in at 0, then per level a same-size and a stride-2 convolution, conv_out
        // last; the odd indices are the SiLUs.
        var convolutions = [try Conv2d.same3x3(p["input_hint_block"][0], inputs: config.hintChannels, outputs: config.hintWidths[0])]
        for (level, width) in config.hintWidths.enumerated().dropLast() {
            let next = config.hintWidths[level + 1]
            convolutions.append(try .same3x3(p["input_hint_block"][2 * convolutions.count], inputs: width, outputs: width))
            convolutions.append(try Conv2d(p["input_hint_block"][2 * convolutions.count], inputs: width, outputs: next, kernel: 3,
                                           stride: 2, padding: .uniform(1)))
        }
        hintConvolutions = convolutions
        hintOut = try .same3x3(p["input_hint_block"][2 * convolutions.count], inputs: config.hintWidths.last!, outputs: c.modelChannels)
        encoder = try UNetEncoder(config: c, parameters: p)
        zeroConvolutions = try encoder.skipWidths.enumerated().map { i, width in
            try Conv2d(p["zero_convs"][i][0], inputs: width, outputs: width, kernel: 1)
        }
        let middleWidth = encoder.skipWidths.last ?? c.modelChannels
        middleOut = try Conv2d(p["middle_block_out"][0], inputs: middleWidth, outputs: middleWidth, kernel: 1)
    }

    /// The control image (N, hintChannels, H x f, W x f) embedded at latent size: (N, modelChannels, H, W).
    func embedHint(_ hint: Tensor) -> Tensor {
        var h = hint
        for conv in hintConvolutions { h = conv(h).silu() }
        return hintOut(h)
    }

    /// The residuals for one UNet call: sample (N, 4, H, W) as the UNet gets it, timesteps (N),
    /// context (N, S, D) and the control image (N, hintChannels, H x f, W x f) in [0, 1] (an
    /// inpaint net's masked pixels at -1). Each residual is multiplied by `scale`, or in guess
    /// mode by scale x 10^(-1 + i / n) for the i-th of the n + 1 residuals (diffusers' logspace:
    /// 0.1 for the first skip up to 1 for the middle).
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], context: Tensor, hint: Tensor,
                               scale: Float, guessMode: Bool = false) -> ControlResiduals {
        let (n, height, width) = (sample.shape[0], sample.shape[2], sample.shape[3])
        let f = config.hintFactor
        precondition(hint.rank == 4 && hint.shape[0] == n && hint.shape[1] == config.hintChannels
                     && hint.shape[2] == height * f && hint.shape[3] == width * f,
                     "ControlNet: control image \(hint.shape) for latents \(sample.shape) (it must be \(f)x their size)")
        let activated = timeEmbedding(features: Tensor.timestepEmbedding(timesteps, dimension: config.unet.modelChannels)).silu()
        let (middle, skips) = encoder(sample, activated: activated, context: context, hint: embedHint(hint))
        let count = skips.count + 1
        func weight(_ i: Int) -> Float {
            guessMode && !config.globalPool ? scale * Float(pow(10, -1 + Double(i) / Double(count - 1))) : scale
        }
        func finish(_ residual: Tensor, _ i: Int) -> Tensor {
            let w = weight(i)
            let scaled = residual.map { $0 * w }
            return config.globalPool ? scaled.meanOverPositions() : scaled
        }
        return ControlResiduals(down: zip(zeroConvolutions, skips).enumerated().map { i, pair in finish(pair.0(pair.1), i) },
                                middle: finish(middleOut(middle), count - 1))
    }
}

extension Tensor {
    /// self (N, C, H, W) plus a residual of the same shape, or of shape (N, C, 1, 1) added at every position.
    func addingResidual(_ r: Tensor) -> Tensor {
        if r.shape == shape { return self + r }
        precondition(rank == 4 && r.shape == [shape[0], shape[1], 1, 1], "a residual \(r.shape) does not fit \(shape)")
        return addingChannelBias(r.reshaped([shape[0], shape[1]]))
    }

    /// (N, C, H, W) -> (N, C, 1, 1): the mean of each channel.
    func meanOverPositions() -> Tensor {
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
        var result = Tensor(zeros: [n, c, 1, 1])
        let out = result.mutablePointer()
        withUnsafeBufferPointer { x in
            for i in 0..<(n * c) {
                var sum: Float = 0
                for j in 0..<hw { sum += x[i * hw + j] }
                out[i] = sum / Float(hw)
            }
        }
        return result
    }
}
