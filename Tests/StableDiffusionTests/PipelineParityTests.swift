import DiffusionModels
import Foundation
import ImageIO
import Sampling
import SafeTensors
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// The guided loop against diffusers' pipelines on the tiny model (Tests/Fixtures/pipelines.safetensors,
/// written by tools/reference/fixtures_pipelines.py): the same prompt through our tokenizer and
/// text encoder, the same seeds through TorchGenerator, drawn in the pipelines' order.
/// Tolerance: 1e-4 of the reference latents' largest magnitude.
@Suite struct PipelineParityTests {
    let reference: SafeTensorsFile
    let checkpoint: Checkpoint
    let unet: UNet
    let vae: AutoencoderKL
    let positive: Tensor, negative: Tensor

    init() throws {
        reference = try Fixtures.tensors("pipelines.safetensors")
        checkpoint = try Checkpoint(path: TinyModel.folder)
        unet = try checkpoint.loadUNet()
        vae = try checkpoint.loadVAE()
        let tokenizer = try checkpoint.loadTokenizer()
        let encoder = try checkpoint.loadTextEncoder()
        positive = encoder.encode([tokenizer.encode(reference.metadata["prompt"]!).ids])
        negative = encoder.encode([tokenizer.encode(reference.metadata["negative"]!).ids])
    }

    func check(_ key: String, _ actual: Tensor) throws {
        if let problem = try parityProblem(reference, key, actual) { Issue.record(Comment(rawValue: problem)) }
    }

    func seed(_ key: String) -> UInt64 { UInt64(reference.metadata[key]!)! }

    /// The fixture image as a model input (1, 3, H, W) in [-1, 1].
    func image() throws -> Tensor { Image(pixels: try reference.tensor("image")).tensor() }

    static let txt2img: [(String, SamplerKind, TimestepSpacing?, Bool, Float)] = [
        ("ddpm.default.0.0", .ddpm, nil, false, 0), ("ddim.default.0.0", .ddim, nil, false, 0),
        ("ddim.linspace.0.5", .ddim, .linspace, false, 0.5), ("euler.default.0.0", .euler, nil, false, 0),
        ("euler.trailing.0.0", .euler, .trailing, false, 0), ("euler_karras.default.0.0", .euler, nil, true, 0),
        ("euler_karras.leading.0.0", .euler, .leading, true, 0), ("euler_a.default.0.0", .eulerAncestral, nil, false, 0),
        ("dpmpp_2m.default.0.0", .dpmPlusPlus2M, nil, false, 0), ("dpmpp_2m.leading.0.0", .dpmPlusPlus2M, .leading, false, 0),
        ("dpmpp_2m_karras.default.0.0", .dpmPlusPlus2M, nil, true, 0),
    ]

    @Test func textToImageEverySampler() throws {
        let latents = try reference.tensor("txt2img.latents")
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5)
        for (name, kind, spacing, karras, eta) in PipelineParityTests.txt2img {
            let key = "txt2img." + name
            var request = DenoiseRequest(sampler: kind, steps: 6)
            request.spacing = spacing
            request.karras = karras
            request.eta = eta
            let result = try DenoiseLoop.run(request, denoiser: denoiser, source: nil, noise: latents,
                                             stepNoise: TorchGenerator(seed: seed(key)))
            try check(key, result)
        }
    }

    @Test(arguments: [("euler_a", SamplerKind.eulerAncestral, 0.6), ("ddim", .ddim, 0.5), ("dpmpp_2m", .dpmPlusPlus2M, 0.75)])
    func imageToImage(name: String, kind: SamplerKind, strength: Double) throws {
        let key = "img2img.\(name).\(strength)"
        // diffusers draws the VAE sample, then the starting noise, then the step noise.
        let generator = TorchGenerator(seed: seed(key))
        let shape = [1, 4, 16, 16]
        let source = vae.encode(try image(), noise: generator.randn(shape))
        let noise = generator.randn(shape)
        var request = DenoiseRequest(sampler: kind, steps: 8)
        request.strength = strength
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5)
        try check(key, try DenoiseLoop.run(request, denoiser: denoiser, source: source, noise: noise, stepNoise: generator))
    }

    /// The pipeline's mask: binarised at 0.5, nearest-downsampled to latent size; and the masked image.
    func inpaintingInputs() throws -> (pixelMask: Tensor, latentMask: Tensor, maskedImage: Tensor) {
        let mask = try reference.tensor("mask").map { $0 >= 0.5 ? 1 : 0 }.reshaped([1, 1, 64, 64])
        let image = try image()
        let masked = image.broadcast(mask) { x, m in m < 0.5 ? x : 0 }
        return (mask, mask.resizedNearest(height: 16, width: 16), masked)
    }

    @Test(arguments: [("euler", SamplerKind.euler, false, 1.0), ("ddim", .ddim, false, 0.75), ("dpmpp_2m_karras", .dpmPlusPlus2M, true, 1.0)])
    func latentBlendInpainting(name: String, kind: SamplerKind, karras: Bool, strength: Double) throws {
        let key = "inpaint4.\(name).\(strength)"
        let (_, latentMask, maskedImage) = try inpaintingInputs()
        // Draws: encode(image), noise, encode(masked image) (unused by 4-channel models), then steps.
        let generator = TorchGenerator(seed: seed(key))
        let shape = [1, 4, 16, 16]
        let original = vae.encode(try image(), noise: generator.randn(shape))
        let noise = generator.randn(shape)
        _ = vae.encode(maskedImage, noise: generator.randn(shape))
        var request = DenoiseRequest(sampler: kind, steps: 6)
        request.karras = karras
        request.strength = strength
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5)
        let result = try DenoiseLoop.run(request, denoiser: denoiser, source: original, noise: noise, stepNoise: generator,
                                         blend: LatentBlend(mask: latentMask, original: original))
        try check(key, result)
        // Outside the mask the final latents are the original's, exactly.
        let outside = result.broadcast(latentMask) { x, m in m == 0 ? x : 0 }
        let originalOutside = original.broadcast(latentMask) { x, m in m == 0 ? x : 0 }
        #expect(outside.maxAbsDifference(originalOutside) == 0)
    }

    @Test(arguments: [("dpmpp_2m", SamplerKind.dpmPlusPlus2M, 1.0), ("euler_a", .eulerAncestral, 0.8)])
    func nineChannelInpainting(name: String, kind: SamplerKind, strength: Double) throws {
        let key = "inpaint9.\(name).\(strength)"
        let conv = try TinyModel.reference().tensor("unet9.conv_in_weight")
        let temporary = TemporaryFolder()
        let folder = temporary.file("tiny-inpaint")
        try TinyModel.copyFolder(to: folder, edit: { component, tensors in
            if component == "unet" { tensors["conv_in.weight"] = conv }
        }, editConfig: { component, config in
            if component == "unet" { config["in_channels"] = 9 }
        })
        let unet9 = try Checkpoint(path: folder).loadUNet()
        let (_, latentMask, maskedImage) = try inpaintingInputs()
        let generator = TorchGenerator(seed: seed(key))
        let shape = [1, 4, 16, 16]
        // Draws: at full strength the noise, then encode(masked image); below it encode(image) first.
        let original: Tensor? = strength < 1 ? vae.encode(try image(), noise: generator.randn(shape)) : nil
        let noise = generator.randn(shape)
        let maskedLatents = vae.encode(maskedImage, noise: generator.randn(shape))
        var request = DenoiseRequest(sampler: kind, steps: 6)
        request.strength = strength
        let denoiser = GuidedDenoiser(unet: unet9, positive: positive, negative: negative, guidanceScale: 7.5,
                                      inpaintingInputs: (latentMask, maskedLatents))
        let result = try DenoiseLoop.run(request, denoiser: denoiser, source: original ?? noise, noise: noise, stepNoise: generator)
        try check(key, result)
    }
}
