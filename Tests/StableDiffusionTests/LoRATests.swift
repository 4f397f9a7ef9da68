import DiffusionModels
import Foundation
import Sampling
import SafeTensors
import StableDiffusion
import TensorCore
import TestSupport
import Testing

/// LoRA files of every layout against diffusers' `load_lora_weights` + `fuse_lora` on the tiny
/// model (Tests/Fixtures/lora and lora-reference.safetensors, written by
/// tools/reference/fixtures_lora.py): patched weights, CLIP conditioning and a 4-step Euler txt2img.
@Suite struct LoRATests {
    let reference: SafeTensorsFile
    let checkpoint: Checkpoint
    let tokenizer: CLIPTokenizer

    init() throws {
        reference = try Fixtures.tensors("lora-reference.safetensors")
        checkpoint = try Checkpoint(path: TinyModel.folder)
        tokenizer = try checkpoint.loadTokenizer()
    }

    static func file(_ name: String) -> String { Fixtures.path("lora/" + name) }

    func check(_ key: String, _ actual: Tensor, tolerance: Float = 1e-4) throws {
        if let problem = try parityProblem(reference, key, actual, tolerance: tolerance) { Issue.record(Comment(rawValue: problem)) }
    }

    /// The conditioning of the reference prompt and the txt2img latents with `patches`.
    func outputs(unet unetPatches: WeightPatches, text textPatches: WeightPatches) throws -> (cond: Tensor, latents: Tensor) {
        let encoder = try checkpoint.loadTextEncoder(patches: textPatches)
        let unet = try checkpoint.loadUNet(patches: unetPatches)
        let positive = encoder.encode([tokenizer.encode(reference.metadata["prompt"]!).ids])
        let negative = encoder.encode([tokenizer.encode(reference.metadata["negative_prompt"]!).ids])
        let denoiser = GuidedDenoiser(unet: unet, positive: positive, negative: negative, guidanceScale: 7.5)
        let latents = try DenoiseLoop.run(DenoiseRequest(sampler: .euler, steps: 4), denoiser: denoiser, source: nil,
                                          noise: try reference.tensor("txt2img.latents"), stepNoise: TorchGenerator(seed: 0))
        return (positive, latents)
    }

    func outputs(_ name: String, strength: Float) throws -> (cond: Tensor, latents: Tensor) {
        let patches = try checkpoint.patches(LoRA(path: Self.file(name)), unetStrength: strength, textStrength: strength)
        return try outputs(unet: patches.unet, text: patches.textEncoder)
    }

    @Test func withoutLoRAMatchesPipeline() throws {
        let (cond, latents) = try outputs(unet: [:], text: [:])
        try check("cond.none", cond)
        try check("txt2img.none", latents)
    }

    /// kohya (diffusers and LDM module names) and peft (with and without `text_model.`, alpha in
    /// the header's lora_adapter_metadata) files of the same LoRA give diffusers' result.
    @Test(arguments: ["kohya.safetensors", "kohya-ldm.safetensors", "peft.safetensors", "peft-no-text-model.safetensors"])
    func everyLayoutMatchesDiffusers(name: String) throws {
        for strength in [1.0, 0.5] as [Float] {
            let (cond, latents) = try outputs(name, strength: strength)
            try check("cond.\(strength)", cond)
            try check("txt2img.\(strength)", latents)
        }
    }

    @Test func patchedWeightsMatchHandPatching() throws {
        let lora = try LoRA(path: Self.file("kohya.safetensors"))
        let patches = try checkpoint.patches(lora, unetStrength: 1, textStrength: 1)
        let unetMap = DiffusersKeyMap.unet(checkpoint.configs.unet)
        let unetStore = checkpoint.unetStore.patched(patches.unet), textStore = checkpoint.textStore.patched(patches.textEncoder)
        var checked = 0
        for key in reference.names where key.hasPrefix("patched.") {
            let expected = try reference.tensor(key)
            let actual: Tensor
            if key.hasPrefix("patched.unet.") {
                let name = try #require(unetMap.ldmName(String(key.dropFirst("patched.unet.".count))))
                actual = try unetStore.tensor(name, shape: expected.shape)
            } else {
                actual = try textStore.tensor(String(key.dropFirst("patched.text_encoder.".count)), shape: expected.shape)
            }
            let (error, scale) = parityReport(key, actual: actual, expected: expected)
            #expect(error <= 1e-6 * scale, "\(key)")
            checked += 1
        }
        #expect(checked >= 4)
        // Unpatched weights are untouched.
        let untouched = "out.2.weight"
        #expect(patches.unet[untouched] == nil)
    }

    @Test func peftWithoutAlphaUsesRank() throws {
        let (cond, latents) = try outputs("peft-no-alpha.safetensors", strength: 1)
        try check("cond.peft-no-alpha.1.0", cond)
        try check("txt2img.peft-no-alpha.1.0", latents)
    }

    @Test func oldDiffusersProcessorFormat() throws {
        let lora = try LoRA(path: Self.file("old-diffusers.safetensors"))
        #expect(lora.modules.allSatisfy { $0.component == .unet })
        let (_, latents) = try outputs("old-diffusers.safetensors", strength: 1)
        try check("txt2img.old-diffusers.1.0", latents)
    }

    /// The peft file's scale comes from the header: alpha 2 over rank 4.
    @Test func peftAlphaFromHeaderMetadata() throws {
        let withAlpha = try LoRA(path: Self.file("peft.safetensors")), without = try LoRA(path: Self.file("peft-no-alpha.safetensors"))
        #expect(withAlpha.modules.allSatisfy { $0.scale == 0.5 })
        #expect(without.modules.allSatisfy { $0.scale == 1 })
    }

    @Test func refusedFormatsAreNamed() throws {
        #expect { try LoRA(path: Self.file("loha.safetensors")) } throws: { "\($0)".contains("LoHa") }
        #expect {
            try checkpoint.patches(LoRA(path: Self.file("sdxl.safetensors")), unetStrength: 1, textStrength: 1)
        } throws: { "\($0)".contains("SDXL") }
    }

    @Test func unknownModuleIsAnErrorNamingIt() throws {
        let folder = TemporaryFolder()
        let source = try SafeTensorsFile(path: Self.file("kohya.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in source.names { tensors[name] = try source.tensor(name) }
        let key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
        for suffix in [".lora_down.weight", ".lora_up.weight", ".alpha"] {
            tensors[key.replacingOccurrences(of: "attn1", with: "attn9") + suffix] = tensors[key + suffix]
        }
        try SafeTensorsWriter.write(tensors, to: folder.file("bad.safetensors"))
        #expect { try checkpoint.patches(LoRA(path: folder.file("bad.safetensors")), unetStrength: 1, textStrength: 1) }
            throws: { "\($0)".contains("attn9") && "\($0)".contains("matches no layer") }
    }

    /// Two LoRAs chained add their deltas: kohya at 0.5 twice equals kohya at 1.
    @Test func chainedLoRAsAdd() throws {
        let lora = try LoRA(path: Self.file("kohya.safetensors"))
        let half = try checkpoint.patches(lora, unetStrength: 0.5, textStrength: 0.5)
        let (cond, latents) = try outputs(unet: half.unet.merging(half.unet, uniquingKeysWith: +),
                                          text: half.textEncoder.merging(half.textEncoder, uniquingKeysWith: +))
        try check("cond.1.0", cond)
        try check("txt2img.1.0", latents)
    }
}
