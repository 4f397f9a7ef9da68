import DiffusionModels
import Foundation
import ImageIO
import Sampling
import SafeTensors
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// LCM and TCD sampling and TAESD against diffusers on the tiny model (Tests/Fixtures/fast.json,
/// fast.safetensors, taesd/ and taesd-original/, written by tools/reference/fixtures_fast.py).
@Suite struct FastSamplingTests {
    let reference: SafeTensorsFile
    let unet: UNet
    let vae: AutoencoderKL
    let positive: Tensor, negative: Tensor
    let seed: UInt64

    init() throws {
        reference = try Fixtures.tensors("fast.safetensors")
        let checkpoint = try Checkpoint(path: TinyModel.folder)
        unet = try checkpoint.loadUNet()
        vae = try checkpoint.loadVAE()
        let tokenizer = try checkpoint.loadTokenizer(), encoder = try checkpoint.loadTextEncoder()
        positive = encoder.encode([tokenizer.encode(reference.metadata["prompt"]!).ids])
        negative = encoder.encode([tokenizer.encode(reference.metadata["negative"]!).ids])
        seed = UInt64(reference.metadata["seed"]!)!
    }

    func check(_ key: String, _ actual: Tensor, tolerance: Float = 1e-4) throws {
        if let problem = try parityProblem(reference, key, actual, tolerance: tolerance) { Issue.record(Comment(rawValue: problem)) }
    }

    @Test func timestepsMatchSetTimesteps() throws {
        struct File: Decodable { let timesteps: [String: [String: [Int]]] }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("fast.json"))))
        var checked = 0
        for (name, table) in file.timesteps {
            for (setting, expected) in table {
                let parts = setting.split(separator: "@")
                let (steps, strength) = (Int(parts[0])!, Double(parts[1])!)
                let sampler = SamplerKind(rawValue: name)!.make(steps: steps, eta: 0.3, strength: strength)
                #expect(sampler.timesteps.map { Int($0) } == expected, "\(name) \(setting)")
                checked += 1
            }
        }
        #expect(checked >= 40)
    }

    /// (sampler, steps, guidance, eta, noise) as fixtures_fast.TXT2IMG.
    static let txt2img: [(SamplerKind, Int, Float, Float, String)] = [
        (.lcm, 4, 1.0, 0.0, "given"), (.lcm, 4, 1.0, 0.0, "seed"), (.lcm, 1, 1.0, 0.0, "seed"), (.lcm, 6, 1.5, 0.0, "seed"),
        (.tcd, 4, 1.0, 0.3, "given"), (.tcd, 4, 1.0, 0.3, "seed"), (.tcd, 4, 1.0, 0.0, "seed"), (.tcd, 8, 2.0, 1.0, "seed"),
    ]

    static func key(_ sampler: SamplerKind, _ steps: Int, _ guidance: Float, _ eta: Float, _ extra: String) -> String {
        "\(sampler.rawValue).\(steps).\(guidance)" + (sampler == .tcd ? ".\(eta)" : "") + ".\(extra)"
    }

    @Test func textToImage() throws {
        for (sampler, steps, guidance, eta, noiseKind) in Self.txt2img {
            let generator = TorchGenerator(seed: seed)
            let noise = noiseKind == "given" ? try reference.tensor("txt2img.latents") : generator.randn([1, 4, 16, 16])
            var request = DenoiseRequest(sampler: sampler, steps: steps)
            request.eta = eta
            let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: guidance)
            let result = try DenoiseLoop.run(request, denoiser: denoiser, source: nil, noise: noise, stepNoise: generator)
            try check("txt2img." + Self.key(sampler, steps, guidance, eta, noiseKind), result)
        }
    }

    @Test(arguments: [(SamplerKind.lcm, 4, 0.5, Float(1.0), Float(0)), (.lcm, 2, 0.3, 1.5, 0), (.tcd, 4, 0.6, 1.0, 0.3)])
    func imageToImage(sampler: SamplerKind, steps: Int, strength: Double, guidance: Float, eta: Float) throws {
        let generator = TorchGenerator(seed: seed)
        let shape = [1, 4, 16, 16]
        let source = vae.encode(Image(pixels: try reference.tensor("image")).tensor(), noise: generator.randn(shape))
        let noise = generator.randn(shape)
        var request = DenoiseRequest(sampler: sampler, steps: steps)
        request.strength = strength
        request.eta = eta
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: guidance)
        let result = try DenoiseLoop.run(request, denoiser: denoiser, source: source, noise: noise, stepNoise: generator)
        try check("img2img." + Self.key(sampler, steps, guidance, eta, "\(strength)"), result)
    }

    @Test func tooManyStepsForTheStrengthIsAnError() throws {
        var request = DenoiseRequest(sampler: .lcm, steps: 8)
        request.strength = 0.1  // 5 timesteps in the shortened schedule
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 1)
        let latents = try reference.tensor("txt2img.latents")
        #expect { try DenoiseLoop.run(request, denoiser: denoiser, source: latents, noise: latents, stepNoise: TorchGenerator(seed: 0)) }
            throws: { "\($0)".contains("at most 5 steps") }
    }

    /// An LCM-distilled UNet (the tiny UNet with time_cond_proj_dim 8) as a diffusers folder and as
    /// a single file, against LatentConsistencyModelPipeline: guidance embedded, one pass per step.
    @Test(arguments: ["folder", "single file"])
    func lcmDistilledCheckpoint(layout: String) throws {
        let folder = TemporaryFolder()
        let projection = try reference.tensor("lcm_unet.cond_proj")
        try TinyModel.copyFolder(to: folder.file("lcm"), edit: { component, tensors in
            if component == "unet" { tensors["time_embedding.cond_proj.weight"] = projection }
        }, editConfig: { component, config in
            if component == "unet" { config["time_cond_proj_dim"] = 8 }
        })
        var checkpoint = try Checkpoint(path: folder.file("lcm"))
        if layout == "single file" {
            // (The tiny model's 8 groups cannot be inferred from a single file: its configs are given.)
            try TinyModel.writeSingleFile(to: folder.file("lcm.safetensors")) { $0["model.diffusion_model.time_embed.cond_proj.weight"] = projection }
            checkpoint = try Checkpoint(path: folder.file("lcm.safetensors"), configs: checkpoint.configs)
        }
        let lcmUNet = try checkpoint.loadUNet()
        #expect(lcmUNet.config.guidanceEmbeddingDimension == 8)
        try check("lcm_unet.guidance_embedding", UNet.guidanceEmbedding([7.5, 0.5], width: 8))
        for (steps, guidance) in [(4, Float(8.5)), (2, 1.0)] {
            let generator = TorchGenerator(seed: seed)
            let noise = generator.randn([1, 4, 16, 16])
            let denoiser = GuidedDenoiser(unet: lcmUNet, positive: positive, negative: negative, guidanceScale: guidance)
            #expect(!denoiser.usesGuidance && denoiser.embedsGuidance)
            let result = try DenoiseLoop.run(DenoiseRequest(sampler: .lcm, steps: steps), denoiser: denoiser, source: nil, noise: noise,
                                             stepNoise: generator)
            try check("lcm_unet.\(steps).\(guidance)", result)
        }
    }

    @Test(arguments: ["taesd", "taesd-original", "taesd-original/taesd_decoder.safetensors"])
    func taesdMatchesAutoencoderTiny(path: String) throws {
        let taesd = try TinyAutoencoder(path: Fixtures.path(path))
        #expect(taesd.canEncode && taesd.canDecode)
        try check("taesd.latents", taesd.encode(try reference.tensor("taesd.image")))
        try check("taesd.decoded", taesd.decode(try reference.tensor("taesd.latents")))
        try check("taesd.decoded_sd", taesd.decode(try reference.tensor("txt2img.lcm.4.1.0.given")))
    }

    @Test func taesdRefusesOtherModels() throws {
        #expect { try TinyAutoencoder(path: TinyModel.folder + "/vae") } throws: { "\($0)".contains("AutoencoderKL") }
        #expect { try TinyAutoencoder(path: Fixtures.path("lora/kohya.safetensors")) } throws: { "\($0)".contains("TAESD") }
        let folder = TemporaryFolder()
        try FileManager.default.copyItem(atPath: Fixtures.path("taesd-original/taesd_encoder.safetensors"), toPath: folder.file("taesd_encoder.safetensors"))
        let encoderOnly = try TinyAutoencoder(path: folder.file("taesd_encoder.safetensors"))
        #expect(encoderOnly.canEncode && !encoderOnly.canDecode)
    }
}

/// The linear latent-to-RGB preview against hand-computed values.
@Suite struct LatentRGBTests {
    @Test func projectsAndClamps() {
        // Pixel 0: latent (1, 0, 0, 0) -> (0.3512, 0.2297, 0.3227); pixel 1: (0, 0, 0, -10) -> (2.12, 2.616, 7.177), clamped.
        let latents = Tensor(shape: [1, 4, 1, 2], values: [1, 0, 0, 0, 0, 0, 0, -10])
        let rgb = LatentRGB.project(latents)
        #expect(rgb.shape == [3, 1, 2])
        let expected: [Float] = [(0.3512 + 1) / 2, 1, (0.2297 + 1) / 2, 1, (0.3227 + 1) / 2, 1]
        #expect(zip(rgb.scalars, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(rgb.scalars)")
    }
}
