import DiffusionModels
import Foundation
import ImageIO
import Sampling
import SafeTensors
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// SDXL against diffusers on a tiny random SDXL of the real architecture (Tests/Fixtures/tiny-sdxl,
/// written by tools/reference/fixtures_sdxl.py): both text encoders with the pooled output, the
/// UNet with its time ids, and StableDiffusionXLPipeline's txt2img and img2img with the same noise.
@Suite struct SDXLTests {
    let reference: SafeTensorsFile
    let checkpoint: Checkpoint

    init() throws {
        reference = try Fixtures.tensors("sdxl-reference.safetensors")
        checkpoint = try Checkpoint(path: Fixtures.path("tiny-sdxl"))
    }

    func check(_ key: String, _ actual: Tensor, tolerance: Float = 1e-4) throws {
        if let problem = try parityProblem(reference, key, actual, tolerance: tolerance) { Issue.record(Comment(rawValue: problem)) }
    }

    /// A prompt as SDXL conditions on it: both encoders' penultimate hidden states side by side
    /// (1, 77, C1 + C2), and the second's pooled, projected output (1, P).
    func encode(_ text: String, checkpoint: Checkpoint? = nil, encoders: (CLIPTextEncoder, CLIPTextEncoder)? = nil) throws -> (context: Tensor, pooled: Tensor) {
        let checkpoint = checkpoint ?? self.checkpoint
        let tokenizer = try checkpoint.loadTokenizer()
        let (first, second) = try encoders ?? (try checkpoint.loadTextEncoder(), try checkpoint.loadTextEncoder2())
        let encoding = tokenizer.encode(text)
        let ids1 = [encoding.ids], ids2 = [encoding.ids(paddingWith: 0)]
        let states1 = first.hiddenStates(ids1), states2 = second.hiddenStates(ids2)
        let context = Tensor.concatenate([states1[states1.count - 2], states2[states2.count - 2]], axis: 2)  // (1, 77, C1 + C2)
        return (context, second.pooled(ids2, lastHidden: states2[states2.count - 1]))
    }

    @Test func loadsAsSDXL() throws {
        #expect(checkpoint.isSDXL)
        #expect(checkpoint.configs.unet.transformerDepths == [1, 1, 2] && checkpoint.configs.unet.attentionLevels == [false, true, true])
        #expect(checkpoint.configs.unet.addition == .init(timeWidth: 8, inputWidth: 64) && checkpoint.configs.textEncoder2?.projectionWidth == 16)
        #expect(checkpoint.configs.vae.scalingFactor == 0.13025)
    }

    @Test func textEncodersWithPooledOutput() throws {
        let tokenizer = try checkpoint.loadTokenizer()
        let encoding = tokenizer.encode(reference.metadata["prompt"]!)
        #expect(encoding.ids.map(Float.init) == (try reference.tensor("text.ids1")).scalars)
        #expect(encoding.ids(paddingWith: 0).map(Float.init) == (try reference.tensor("text.ids2")).scalars)
        let (context, pooled) = try encode(reference.metadata["prompt"]!)
        try check("text.embeds", context, tolerance: 1e-5)
        try check("text.pooled", pooled, tolerance: 1e-5)
        let (negative, negativePooled) = try encode(reference.metadata["negative"]!)
        try check("text.negative_embeds", negative, tolerance: 1e-5)
        try check("text.negative_pooled", negativePooled, tolerance: 1e-5)
    }

    /// The single file of SDXL's layout (CLIP-L in transformers names, OpenCLIP bigG with fused
    /// q/k/v and a transposed projection, the UNet's label_emb): its widths and layout are read from
    /// the shapes, and it gives the folder's outputs. (The heads, 64 wide in SDXL, and the GroupNorm
    /// groups, 32 in SDXL, are the tiny model's own and come from the folder's configs.)
    @Test func singleFileLoadsAsTheFolder() throws {
        let path = Fixtures.path("tiny-sdxl.safetensors")
        let inferred = try Checkpoint(path: path)
        #expect(inferred.isSDXL && inferred.layout == .singleFile)
        var unet = inferred.configs.unet, second = try #require(inferred.configs.textEncoder2), vae = inferred.configs.vae
        (unet.headsPerLevel, unet.groups, vae.groups) = (checkpoint.configs.unet.headsPerLevel, checkpoint.configs.unet.groups, checkpoint.configs.vae.groups)
        second.heads = try #require(checkpoint.configs.textEncoder2).heads
        #expect(unet == checkpoint.configs.unet, "\(unet) vs \(checkpoint.configs.unet)")
        #expect(second == checkpoint.configs.textEncoder2, "\(second) vs \(String(describing: checkpoint.configs.textEncoder2))")
        #expect(vae == checkpoint.configs.vae)
        let single = try Checkpoint(path: path, configs: checkpoint.configs)
        let (context, pooled) = try encode(reference.metadata["prompt"]!, checkpoint: single)
        try check("text.embeds", context, tolerance: 1e-5)
        try check("text.pooled", pooled, tolerance: 1e-5)
        let added = AddedConditions(pooled: try reference.tensor("unet.text_embeds"), timeIds: try reference.tensor("unet.time_ids"))
        let eps = try single.loadUNet()(try reference.tensor("unet.sample"), timesteps: try reference.tensor("unet.timesteps").scalars,
                                        context: try reference.tensor("unet.context"), added: added)
        try check("unet.output", eps, tolerance: 1e-5)
        _ = try single.loadVAE()
    }

    /// A kohya SDXL LoRA (lora_unet_ with LDM names, lora_te1_, lora_te2_) at 0.8, against diffusers'
    /// load_lora_weights + fuse_lora: both text encoders and the UNet.
    @Test func loraMatchesDiffusers() throws {
        let patches = try checkpoint.patches(LoRA(path: Fixtures.path("tiny-sdxl-lora.safetensors")), unetStrength: 0.8, textStrength: 0.8)
        #expect(!patches.unet.isEmpty && !patches.textEncoder.isEmpty && !patches.textEncoder2.isEmpty)
        let encoders = (try checkpoint.loadTextEncoder(patches: patches.textEncoder), try checkpoint.loadTextEncoder2(patches: patches.textEncoder2))
        let (context, pooled) = try encode(reference.metadata["prompt"]!, encoders: encoders)
        try check("lora.text.embeds", context, tolerance: 1e-5)
        try check("lora.text.pooled", pooled, tolerance: 1e-5)
        let added = AddedConditions(pooled: try reference.tensor("unet.text_embeds"), timeIds: try reference.tensor("unet.time_ids"))
        let eps = try checkpoint.loadUNet(patches: patches.unet)(try reference.tensor("unet.sample"), timesteps: try reference.tensor("unet.timesteps").scalars,
                                                                context: try reference.tensor("unet.context"), added: added)
        try check("lora.unet.output", eps, tolerance: 1e-5)
        // An SD 1.x LoRA on SDXL, and this one on SD 1.x: errors naming the family.
        #expect { try checkpoint.patches(LoRA(path: Fixtures.path("lora/kohya.safetensors")), unetStrength: 1, textStrength: 1) }
            throws: { "\($0)".contains("SD 1.x") }
        #expect { try Checkpoint(path: TinyModel.folder).patches(LoRA(path: Fixtures.path("tiny-sdxl-lora.safetensors")), unetStrength: 1, textStrength: 1) }
            throws: { "\($0)".contains("SDXL") }
    }

    @Test func unetWithTimeIds() throws {
        let unet = try checkpoint.loadUNet()
        let added = AddedConditions(pooled: try reference.tensor("unet.text_embeds"), timeIds: try reference.tensor("unet.time_ids"))
        let eps = unet(try reference.tensor("unet.sample"), timesteps: try reference.tensor("unet.timesteps").scalars,
                       context: try reference.tensor("unet.context"), added: added)
        try check("unet.output", eps, tolerance: 1e-5)
    }

    func denoiser(guidance: Float, size: Int = 64) throws -> GuidedDenoiser {
        let (positive, pooled) = try encode(reference.metadata["prompt"]!)
        let (negative, negativePooled) = try encode(reference.metadata["negative"]!)
        let ids = Tensor(shape: [1, 6], values: AddedConditions.timeIds(height: size, width: size))
        return GuidedDenoiser(unet: try checkpoint.loadUNet(), positive: positive, negative: negative, guidanceScale: guidance,
                              added: (AddedConditions(pooled: pooled, timeIds: ids), AddedConditions(pooled: negativePooled, timeIds: ids)))
    }

    @Test func textToImage() throws {
        var request = DenoiseRequest(sampler: .euler, steps: 5)
        request.spacing = .leading
        let result = try DenoiseLoop.run(request, denoiser: try denoiser(guidance: 5), source: nil, noise: try reference.tensor("txt2img.latents"),
                                         stepNoise: TorchGenerator(seed: 0))
        try check("txt2img", result)
    }

    @Test func imageToImage() throws {
        let vae = try checkpoint.loadVAE()
        let generator = TorchGenerator(seed: UInt64(reference.metadata["img2img"]!)!)
        let shape = [1, 4, 8, 8]
        let source = vae.encode(Image(pixels: try reference.tensor("image")).tensor(), noise: generator.randn(shape))
        let noise = generator.randn(shape)
        var request = DenoiseRequest(sampler: .eulerAncestral, steps: 6)
        request.spacing = .leading
        request.strength = 0.6
        let result = try DenoiseLoop.run(request, denoiser: try denoiser(guidance: 5), source: source, noise: noise, stepNoise: generator)
        try check("img2img", result)
    }
}
