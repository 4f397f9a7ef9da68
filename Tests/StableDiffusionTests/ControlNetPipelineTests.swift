import DiffusionModels
import Foundation
import ImageIO
import Sampling
import SafeTensors
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// The guided loop with ControlNets against diffusers' ControlNet pipelines on the tiny model
/// (Tests/Fixtures/controlnet-reference.safetensors, written by tools/reference/fixtures_controlnet.py):
/// img2img with guidance over part of the steps, two nets at once, guess mode, and inpainting with
/// the inpaint condition. Tolerance: 1e-4 of the reference latents' largest magnitude.
@Suite struct ControlNetPipelineTests {
    let reference: SafeTensorsFile
    let unet: UNet
    let vae: AutoencoderKL
    let positive: Tensor, negative: Tensor
    let a: ControlNet, b: ControlNet

    init() throws {
        reference = try Fixtures.tensors("controlnet-reference.safetensors")
        let checkpoint = try Checkpoint(path: TinyModel.folder)
        unet = try checkpoint.loadUNet()
        vae = try checkpoint.loadVAE()
        let tokenizer = try checkpoint.loadTokenizer()
        let encoder = try checkpoint.loadTextEncoder()
        positive = encoder.encode([tokenizer.encode(reference.metadata["prompt"]!).ids])
        negative = encoder.encode([tokenizer.encode(reference.metadata["negative"]!).ids])
        a = try ControlNetFile(path: Fixtures.path("controlnet/tiny-a-ldm.safetensors")).load(for: unet.config)
        b = try ControlNetFile(path: Fixtures.path("controlnet/tiny-b")).load(for: unet.config)
    }

    func check(_ key: String, _ actual: Tensor) throws {
        if let problem = try parityProblem(reference, key, actual) { Issue.record(Comment(rawValue: problem)) }
    }

    func seed(_ key: String) -> UInt64 { UInt64(reference.metadata[key]!)! }

    /// A (3, H, W) fixture image as a batch of one.
    func batch(_ key: String) throws -> Tensor {
        let t = try reference.tensor(key)
        return t.reshaped([1] + t.shape)
    }

    @Test func imageToImageOverPartOfTheSteps() throws {
        let generator = TorchGenerator(seed: seed("img2img"))
        let shape = [1, 4, 16, 16]
        let source = vae.encode(Image(pixels: try reference.tensor("image")).tensor(), noise: generator.randn(shape))
        let noise = generator.randn(shape)
        var request = DenoiseRequest(sampler: .euler, steps: 8)
        request.strength = 0.75
        let guide = ControlGuide(net: a, hint: try batch("control"), scale: 0.9, start: 0.1, end: 0.8)
        // 6 steps run: the net guides steps 1 to 3 (0-based; step 4 ends at 5/6 > 0.8).
        #expect((0..<6).map { guide.isActive(step: $0, of: 6) } == [false, true, true, true, false, false])
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5, controls: [guide])
        try check("img2img", try DenoiseLoop.run(request, denoiser: denoiser, source: source, noise: noise, stepNoise: generator))
    }

    @Test func twoNetsAtOnce() throws {
        let controls = [ControlGuide(net: a, hint: try batch("control"), scale: 0.7), ControlGuide(net: b, hint: try batch("control_b"), scale: 0.5)]
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5, controls: controls)
        let result = try DenoiseLoop.run(DenoiseRequest(sampler: .eulerAncestral, steps: 6), denoiser: denoiser, source: nil,
                                         noise: try reference.tensor("txt2img.latents"), stepNoise: TorchGenerator(seed: seed("multi")))
        try check("multi", result)
    }

    @Test func guessMode() throws {
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5,
                                      controls: [ControlGuide(net: a, hint: try batch("control"), scale: 1, guessMode: true)])
        let result = try DenoiseLoop.run(DenoiseRequest(sampler: .euler, steps: 6), denoiser: denoiser, source: nil,
                                         noise: try reference.tensor("txt2img.latents"), stepNoise: TorchGenerator(seed: 0))
        try check("guess.txt2img", result)
    }

    /// Outside its part of the steps the net adds nothing: the image is the one without it.
    @Test func outsideItsStepsTheNetAddsNothing() throws {
        let latents = try reference.tensor("txt2img.latents")
        func run(_ controls: [ControlGuide]) throws -> Tensor {
            let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5, controls: controls)
            return try DenoiseLoop.run(DenoiseRequest(sampler: .euler, steps: 4), denoiser: denoiser, source: nil, noise: latents,
                                       stepNoise: TorchGenerator(seed: 0))
        }
        let plain = try run([])
        // 4 steps: step 0 ends at 1/4 > 0.2, so no step is guided.
        #expect(try run([ControlGuide(net: a, hint: try batch("control"), scale: 1, start: 0, end: 0.2)]).maxAbsDifference(plain) == 0)
        #expect(try run([ControlGuide(net: a, hint: try batch("control"), scale: 1, start: 0, end: 0.5)]).maxAbsDifference(plain) > 0)
    }

    /// The inpaint net's condition: the image with the masked pixels at -1.
    @Test func inpaintingWithTheInpaintCondition() throws {
        let image = Image(pixels: try reference.tensor("image"))
        let mask = try reference.tensor("mask").reshaped([1, 1, 64, 64])
        let condition = try batch("image").broadcast(mask) { x, m in m > 0.5 ? -1 : x }
        let generator = TorchGenerator(seed: seed("inpaint"))
        let shape = [1, 4, 16, 16]
        let original = vae.encode(image.tensor(), noise: generator.randn(shape))
        let noise = generator.randn(shape)
        _ = generator.randn(shape)  // the masked image's encoding (unused by 4-channel models)
        var request = DenoiseRequest(sampler: .euler, steps: 6)
        request.strength = 1
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5,
                                      controls: [ControlGuide(net: a, hint: condition, scale: 1)])
        let result = try DenoiseLoop.run(request, denoiser: denoiser, source: original, noise: noise, stepNoise: generator,
                                         blend: LatentBlend(mask: mask.resizedNearest(height: 16, width: 16), original: original))
        try check("inpaint", result)
    }
}
