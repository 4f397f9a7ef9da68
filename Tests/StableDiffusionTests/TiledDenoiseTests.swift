import DiffusionModels
import Foundation
import Sampling
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// The UNet in tiles (MultiDiffusion): every step's noise prediction is the ramp-weighted average
/// of whole-tile predictions, and a latent that fits one tile runs whole.
@Suite struct TiledDenoiseTests {
    @Test func tiledPredictionAveragesWholeTilePredictions() throws {
        let checkpoint = try Checkpoint(path: TinyModel.folder)
        let unet = try checkpoint.loadUNet()
        let generator = TorchGenerator(seed: 11)
        let positive = generator.randn([1, 77, unet.config.contextDimension]), negative = generator.randn([1, 77, unet.config.contextDimension])
        let input = generator.randn([1, 4, 16, 40])  // three 16x16 tiles across, at least 4 cells of overlap
        let whole = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 3)
        let tiled = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 3, tiles: (16, 4))
        let plan = TilePlan(height: 16, width: 40, tileSize: 16, overlap: 4, layout: .fitted)
        #expect(plan.columns == [0..<16, 12..<28, 24..<40])
        let expected = plan.averaged(input) { tile, _, _ in whole.noisePrediction(tile, timestep: 500) }
        let actual = tiled.noisePrediction(input, timestep: 500)
        #expect(actual.shape == input.shape && actual.maxAbsDifference(expected) == 0)
        // Away from the overlaps the tiled prediction is the first tile's own.
        let first = whole.noisePrediction(input.window(rows: 0..<16, columns: 0..<16), timestep: 500)
        #expect(actual.window(rows: 0..<16, columns: 0..<12).maxAbsDifference(first.window(rows: 0..<16, columns: 0..<12)) == 0)
        // A latent that fits one tile runs whole, bit for bit.
        let small = input.window(rows: 0..<16, columns: 0..<16)
        #expect(tiled.noisePrediction(small, timestep: 500).maxAbsDifference(whole.noisePrediction(small, timestep: 500)) == 0)
        // A whole loop in tiles gives finite latents of the input's size.
        let result = try DenoiseLoop.run(DenoiseRequest(sampler: .eulerAncestral, steps: 3), denoiser: tiled, source: nil,
                                         noise: generator.randn([1, 4, 16, 40]), stepNoise: generator)
        #expect(result.shape == [1, 4, 16, 40] && !result.hasNonFinite)
    }
}
