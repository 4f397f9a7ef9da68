import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// Tiled VAE encode and decode against diffusers' `enable_vae_tiling()` (tools/reference/fixtures_tiling.py:
/// the tiny VAE, a 76x100 image whose last tiles are 4 pixels thin), and the tile planner's rules.
@Suite struct TilingTests {
    let reference: SafeTensorsFile
    init() throws { reference = try Fixtures.tensors("vae-tiling.safetensors") }

    @Test func tiledVAEMatchesDiffusers() throws {
        let vae = try Checkpoint(path: TinyModel.folder).loadVAE()
        let image = try reference.tensor("image"), latents = try reference.tensor("latents")
        for (tile, overlap) in [(32, 8), (40, 16)] {
            let tiling = VAETiling(tileSize: tile, overlap: overlap)
            #expect(tiling.problem(downscale: vae.downsamplingFactor) == nil)
            let posterior = vae.posterior(image, tiling: tiling)
            for (key, actual) in [("mean", posterior.mean), ("logvar", posterior.logVariance), ("decoded", vae.decode(latents, tiling: tiling))] {
                let problem = try parityProblem(reference, "\(tile)_\(overlap).\(key)", actual)
                #expect(problem == nil, "\(problem ?? "")")
            }
        }
        // Untiled, and tiling an input that fits one tile, is the plain pass.
        #expect(try parityProblem(reference, "untiled.mean", vae.posterior(image).mean) == nil)
        #expect(try parityProblem(reference, "untiled.decoded", vae.decode(latents)) == nil)
        let whole = VAETiling(tileSize: 128, overlap: 32)
        #expect(vae.decode(latents, tiling: whole).scalars == vae.decode(latents).scalars)
        // How far tiling moves the result (GroupNorm statistics and attention per tile): printed for the record.
        _ = parityReport("tiled vs untiled decode (32/8)", actual: try reference.tensor("32_8.decoded"), expected: try reference.tensor("untiled.decoded"))
    }

    @Test func tilePlanCoversEveryPixelOnce() {
        // diffusers' rule: starts every tile - overlap while inside; the last tiles are cut by the edge.
        let plan = TilePlan(height: 76, width: 100, tileSize: 32, overlap: 8)
        #expect(plan.rows == [0..<32, 24..<56, 48..<76, 72..<76])
        #expect(plan.columns == [0..<32, 24..<56, 48..<80, 72..<100, 96..<100])
        #expect(plan.tileCount == 20 && !plan.fitsOneTile)
        // One tile, exactly the tile size, and a size that is not a multiple of the stride.
        #expect(TilePlan(height: 20, width: 20, tileSize: 32, overlap: 8).rows == [0..<20])
        // (An input exactly one tile long is planned as diffusers plans it, with a thin second tile; it fits one tile and is not tiled.)
        #expect(TilePlan(height: 32, width: 32, tileSize: 32, overlap: 8).rows == [0..<32, 24..<32])
        #expect(TilePlan(height: 32, width: 32, tileSize: 32, overlap: 8).fitsOneTile)
        #expect(TilePlan(height: 33, width: 8, tileSize: 32, overlap: 8).rows == [0..<32, 24..<33])
        #expect(TilePlan(height: 1, width: 1, tileSize: 512, overlap: 0).tileCount == 1)
        #expect(TilePlan(height: 1024, width: 1024, tileSize: 512, overlap: 0).columns == [0..<512, 512..<1024])

        // The identity through tiles gives the input back, whatever the sizes (the blend of equal
        // values is the value), at scales up, down and 1.
        for (h, w, tile, overlap) in [(76, 100, 32, 8), (9, 13, 4, 2), (8, 8, 8, 0), (17, 40, 16, 12), (5, 5, 2, 1)] {
            let plan = TilePlan(height: h, width: w, tileSize: tile, overlap: overlap)
            var input = Tensor(uninitialized: [2, 3, h, w])
            let p = input.mutablePointer()
            for i in 0..<input.count { p[i] = Float(i % 977) * 0.01 }
            // (Equal values blended give the value back to within rounding: x(1 - t) + xt.)
            #expect(plan.map(input) { $0 }.maxAbsDifference(input) <= 1e-5 * input.maxMagnitude, "\(h)x\(w) tiles \(tile)/\(overlap)")
        }
        // Up by 4: each tile's output is its input repeated; the whole must be the input upsampled.
        let small = TilePlan(height: 10, width: 14, tileSize: 6, overlap: 2)
        var input = Tensor(uninitialized: [1, 1, 10, 14])
        let p = input.mutablePointer()
        for i in 0..<input.count { p[i] = Float(i) }
        let up = small.map(input, scale: (4, 1)) { $0.upsampledNearest2x().upsampledNearest2x() }
        let expected = input.upsampledNearest2x().upsampledNearest2x()
        #expect(up.shape == expected.shape && up.maxAbsDifference(expected) <= 1e-5 * expected.maxMagnitude)
    }

    /// The fitted layout: whole tiles, evenly spread, overlapping by at least the overlap; averaging
    /// weighs each tile by ramps over the overlap from its inner edges.
    @Test func fittedTilesAndTheirAverage() {
        let plan = TilePlan(height: 40, width: 200, tileSize: 64, overlap: 16, layout: .fitted)
        #expect(plan.rows == [0..<40])
        #expect(plan.columns == [0..<64, 45..<109, 91..<155, 136..<200])
        #expect(TilePlan(height: 64, width: 65, tileSize: 64, overlap: 8, layout: .fitted).columns == [0..<64, 1..<65])
        for (length, tile, overlap) in [(200, 64, 16), (513, 64, 16), (1000, 96, 24), (97, 96, 8)] {
            let spans = TilePlan(height: 1, width: length, tileSize: tile, overlap: overlap, layout: .fitted).columns
            #expect(spans.first?.lowerBound == 0 && spans.last?.upperBound == length && spans.allSatisfy { $0.count == tile })
            #expect(zip(spans, spans.dropFirst()).allSatisfy { $0.upperBound - $1.lowerBound >= overlap }, "\(spans)")
        }
        // The identity averages back to the input.
        var input = Tensor(uninitialized: [1, 2, 40, 200])
        let p = input.mutablePointer()
        for i in 0..<input.count { p[i] = Float(i % 613) * 0.01 }
        #expect(plan.averaged(input) { tile, _, _ in tile }.maxAbsDifference(input) <= 1e-5 * input.maxMagnitude)
        // Each tile's constant index: where tiles 0 and 1 overlap (columns 45..<64), weights ramp over 16 columns.
        var index = 0
        let averaged = plan.averaged(Tensor(zeros: [1, 1, 40, 200])) { tile, _, _ in
            defer { index += 1 }
            return Tensor(repeating: Float(index), shape: tile.shape)
        }
        let row = Array(averaged.scalars[0..<200])
        #expect(row[0..<45].allSatisfy { $0 == 0 } && row[64..<91].allSatisfy { $0 == 1 })
        // Column 50: tile 0 weighs min(1, (64 - 50) / 17), tile 1 (50 - 45 + 1) / 17.
        let (w0, w1) = (Float(14) / 17, Float(6) / 17)
        #expect(abs(row[50] - w1 / (w0 + w1)) < 1e-6)
        // With an output scale (an upscaler's tiles): nearest 4x upsampling, tile by tile, averages back to
        // the whole image upsampled.
        let upsampled = plan.averaged(input, scale: 4) { tile, _, _ in tile.resizedNearest(height: tile.shape[2] * 4, width: tile.shape[3] * 4) }
        #expect(upsampled.maxAbsDifference(input.resizedNearest(height: 160, width: 800)) <= 1e-5 * input.maxMagnitude)
    }

    @Test func tilingSettingsAreChecked() {
        #expect(VAETiling.standard.problem(downscale: 8) == nil)
        #expect(VAETiling(tileSize: 500, overlap: 128).problem(downscale: 8)?.contains("multiple of 8") == true)
        #expect(VAETiling(tileSize: 512, overlap: 100).problem(downscale: 8)?.contains("overlap 100") == true)
        #expect(VAETiling(tileSize: 512, overlap: 512).problem(downscale: 8)?.contains("not less than") == true)
    }

    /// An image too big to process whole in the memory left is refused before any work, with the
    /// memory it would need and the setting that makes it fit.
    @Test func untiledImagesTooBigForMemoryAreRefused() throws {
        let vae = try Checkpoint(path: TinyModel.folder).loadVAE()  // 16 channels at full size
        let problem = VAETiling.untiledProblem(vae, width: 4032, height: 3024, available: 1_000_000_000)
        #expect(problem?.contains("4032x3024") == true && problem?.contains("5.9 GB") == true && problem?.contains("tiled: auto or on") == true,
                "\(problem ?? "nil")")
        #expect(VAETiling.untiledProblem(vae, width: 64, height: 64, available: 1_000_000_000) == nil)
        #expect(VAETiling.untiledProblem(vae, width: 4032, height: 3024, available: nil) == nil)
        #expect((SystemMemory.available() ?? 0) > 0)
    }
}
