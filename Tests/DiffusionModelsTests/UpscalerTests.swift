import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// ESRGAN-family upscalers against spandrel (Tests/Fixtures/upscalers, from
/// tools/reference/fixtures_upscalers.py): every key layout and file format users have, the
/// architecture and scale detected from the weights, and the outputs within 1e-4.
@Suite struct UpscalerTests {
    let reference = try! Fixtures.tensors("upscalers/expected.safetensors")

    @Test(arguments: [
        ("esrgan-x4-new.pth", 4, "RRDBNet"), ("esrgan-x2-new.pth", 2, "RRDBNet"), ("esrgan-x1-new.pth", 1, "RRDBNet"),
        ("esrgan-x4-old.pth", 4, "RRDBNet"), ("esrgan-x4-bsrgan.pth", 4, "RRDBNet"),
        ("compact-x4.pth", 4, "SRVGGNetCompact"), ("compact-x2.safetensors", 2, "SRVGGNetCompact"),
    ])
    func matchesSpandrel(file: String, scale: Int, architecture: String) throws {
        let upscaler = try Upscaler(path: Fixtures.path("upscalers/" + file))
        #expect(upscaler.scale == scale && upscaler.summary.hasPrefix(architecture), "\(upscaler.summary)")
        let stem = String(file.prefix { $0 != "." })
        let input = try reference.tensor(stem + ".input")  // (1, 3, 13, 17)
        let output = upscaler(input)
        #expect(output.shape == [1, 3, 13 * scale, 17 * scale])
        if let problem = try parityProblem(reference, stem + ".output", output, tolerance: 1e-4) { Issue.record(Comment(rawValue: problem)) }
        if !file.contains("x2-new") && !file.contains("x1-new") {  // the network alone pads those to its own multiple
            if let problem = try parityProblem(reference, stem + ".raw", upscaler.network(input), tolerance: 1e-4) { Issue.record(Comment(rawValue: problem)) }
        }
    }

    /// Tiles: a small tile size gives (nearly) the whole-image result, the same size, in [0, 1].
    @Test func tilesJoinSmoothly() throws {
        let upscaler = try Upscaler(path: Fixtures.path("upscalers/compact-x4.pth"))
        let input = Tensor(shape: [1, 3, 30, 41], values: (0..<(3 * 30 * 41)).map { Float(0.5 + 0.4 * sin(Double($0) * 0.013)) })
        let whole = upscaler.upscale(input, tileSize: nil, overlap: 0)
        let tiled = upscaler.upscale(input, tileSize: 16, overlap: 8)
        #expect(tiled.shape == whole.shape && tiled.shape == [1, 3, 120, 164])
        // A compact model sees 4 pixels around each output (4 convolutions): tiles differ from the whole
        // image only within 4 pixels of their inner edges, where the ramps give them little weight
        // (with 16-pixel tiles that is much of each tile; TilingTests checks the averaging exactly).
        let difference = (0..<whole.count).map { abs(tiled.pointer[$0] - whole.pointer[$0]) }
        #expect(difference.max()! < 0.1 && difference.reduce(0, +) / Float(whole.count) < 0.01,
                "max \(difference.max()!), mean \(difference.reduce(0, +) / Float(whole.count))")
        #expect((0..<tiled.count).allSatisfy { tiled.pointer[$0] >= 0 && tiled.pointer[$0] <= 1 + 1e-6 })
    }

    @Test func unknownArchitecturesAreNamed() throws {
        let path = Fixtures.path("upscalers/unknown-arch.safetensors")
        #expect { try Upscaler(path: path) } throws: { "\($0)".contains(path) && "\($0)".contains("conv_first.weight") && "\($0)".contains("ESRGAN") }
        #expect { try Upscaler(path: TinyModel.folder + "/vae/diffusion_pytorch_model.fp16.safetensors") } throws: { "\($0)".contains("not an upscaler") }
    }
}
