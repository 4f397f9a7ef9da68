import ArgumentParser
import DiffusionModels
import Foundation
import ImageIO
import Sampling
import StableDiffusion
import TensorCore

/// `sdflow bench tiles`: the two ways to refine a big image with the UNet in tiles, side by side with
/// the whole latent, on one photo: MultiDiffusion (the tiles' predictions averaged at every step,
/// what `denoise` does) and independent tiles blended once at the end (tile-then-blend, as tiled
/// upscalers without a seam-fix pass do).
struct BenchTiles: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiles",
        abstract: "Compare the UNet in tiles (MultiDiffusion), independent tiles blended once, and the whole latent on a photo.",
        discussion: """
            Upscales the photo (Lanczos), encodes it, runs an img2img denoise (euler) three ways and decodes
            each: OUT/whole.png, OUT/multidiffusion.png, OUT/independent.png, with the time of each. Measure
            their seams with tools/seams.py (the command is printed).
            """)

    @Option(help: "An SD 1.x checkpoint (file or diffusers folder).") var checkpoint: String
    @Option(help: "The photo.") var image: String
    @Option(help: "Upscale before refining.") var scale = 2.0
    @Option(help: "UNet tile side in latent cells.") var tile = 16
    @Option(help: "Tile overlap in latent cells.") var overlap = 4
    @Option(help: "img2img strength.") var strength = 0.3
    @Option(help: "Sampler steps (at strength 1).") var steps = 20
    @Option(help: "Classifier-free guidance scale.") var cfg = 3.0
    @Option(help: "The prompt.") var prompt = ""
    @Option(help: "Seed of the noise.") var seed = 42
    @Option(help: "Folder for the three images.") var output = "out/tiles"

    func run() throws {
        try Engine.withMeasuredKernels(try Engine.computeSettings(threads: nil), quiet: true).run { try measure() }
    }

    /// Refines the photo three ways (bound to the measured kernels by `run`).
    private func measure() throws {
        let model = try Checkpoint(path: checkpoint)
        let unet = try model.loadUNet(), vae = try model.loadVAE()
        let (encoder, tokenizer) = (try model.loadTextEncoder(), try model.loadTokenizer())
        func encode(_ text: String) throws -> Tensor {
            encoder.encode(try tokenizer.chunks(text, weighting: .a1111, embeddings: EmbeddingLibrary()), weighting: .a1111,
                           emptyIDs: tokenizer.encode("").ids)
        }
        let (positive, negative) = (try encode(prompt), try encode(""))
        let photo = try ImageFile.read(image)
        let factor = vae.downsamplingFactor
        let (width, height) = (Int(Double(photo.width) * scale) / factor * factor, Int(Double(photo.height) * scale) / factor * factor)
        let larger = photo.resized(toWidth: width, height: height, mode: .exact, filter: .lanczos)
        let source = vae.encode(larger.tensor(), noise: nil, tiling: nil)  // (1, 4, h, w)
        let noise = TorchGenerator(seed: UInt64(seed)).randn(source.shape)
        var request = DenoiseRequest(sampler: .euler, steps: steps)
        request.strength = strength
        func denoise(_ latent: Tensor, _ noise: Tensor, tiles: (size: Int, overlap: Int)?) throws -> Tensor {
            let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: Float(cfg), tiles: tiles)
            return try DenoiseLoop.run(request, denoiser: denoiser, source: latent, noise: noise, stepNoise: TorchGenerator(seed: UInt64(seed)))
        }
        let plan = TilePlan(height: source.shape[2], width: source.shape[3], tileSize: tile, overlap: overlap, layout: .fitted)
        let ways: [(String, () throws -> Tensor)] = [
            ("whole", { try denoise(source, noise, tiles: nil) }),
            ("multidiffusion", { try denoise(source, noise, tiles: (tile, overlap)) }),
            ("independent", {
                var failure: Error?
                let joined = plan.averaged(source) { window, rows, columns in
                    do { return try denoise(window, noise.window(rows: rows, columns: columns), tiles: nil) } catch {
                        failure = error
                        return window
                    }
                }
                if let failure { throw failure }
                return joined
            }),
        ]
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        print("\(photo.width)x\(photo.height) -> \(width)x\(height), latent \(source.shape[3])x\(source.shape[2]), \(plan.tileCount) tiles of \(tile) cells overlapping by \(overlap)")
        for (name, body) in ways {
            let start = Date()
            let latent = try body()
            let seconds = Date().timeIntervalSince(start)
            try ImageFile.write(Image(modelOutput: vae.decode(latent, tiling: nil)), to: output + "/\(name).png")
            print(String(format: "%-15@ denoise %.1f s", name as NSString, seconds))
        }
        for name in ["multidiffusion", "independent"] {
            print("python3 tools/seams.py \(output)/\(name).png \(output)/whole.png --tile \(tile) --overlap \(overlap) --layout fitted --unit \(factor)")
        }
    }
}
