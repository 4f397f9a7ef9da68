import DiffusionModels
import Foundation
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// Guidance with a prompt and a negative prompt of different lengths (chunk counts), on the tiny
/// UNet: each guided prediction must equal the one computed from separate UNet calls, one per
/// prompt at its own length (what A1111 does for such prompts), to float rounding (the guidance
/// scale of 7.5 amplifies it).
@Suite struct LongPromptTests {
    let unet: UNet

    init() throws { unet = try Checkpoint(path: TinyModel.folder).loadUNet() }

    /// Context (1, 77 x chunks, C) of deterministic values.
    func context(chunks: Int, seed: Float) -> Tensor {
        let c = unet.config.contextDimension, count = 77 * chunks * c
        return Tensor(shape: [1, 77 * chunks, c], values: (0..<count).map { sin(Float($0) * 0.37 + seed) })
    }

    /// eps_u + s (eps_c - eps_u) from one UNet call per prompt.
    func separately(_ x: Tensor, _ positive: Tensor, _ negative: Tensor, scale: Float) -> Tensor {
        let c = unet(x, timesteps: [500], context: positive), u = unet(x, timesteps: [500], context: negative)
        return u.broadcast(c) { u, c in u + scale * (c - u) }
    }

    @Test(arguments: [(1, 2), (3, 1), (2, 3), (5, 7)])  // (5, 7): no small common multiple, one call each
    func differentLengthsMatchSeparateCalls(positiveChunks: Int, negativeChunks: Int) {
        let x = Tensor(shape: [1, 4, 8, 8], values: (0..<256).map { cos(Float($0) * 0.11) })
        let positive = context(chunks: positiveChunks, seed: 1), negative = context(chunks: negativeChunks, seed: 2)
        let guided = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5)
        let actual = guided.noisePrediction(x, timestep: 500)
        let expected = separately(x, positive, negative, scale: 7.5)
        let (error, scale) = parityReport("\(positiveChunks)/\(negativeChunks) chunks", actual: actual, expected: expected)
        #expect(error <= 5e-5 * scale, "max error \(error) of \(scale)")
    }
}
