import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// Opt-in checks on the random-weight model of the exact SD 1.5 architecture written by
/// `tools/reference/make_sd15_model.py OUT_DIR`. Run in a release build:
///
///     SDFLOW_SD15=OUT_DIR swift test -c release --filter FullSize
@Suite(.serialized, .enabled(if: FullSizeModel.folder != nil, "set SDFLOW_SD15 to the folder written by make_sd15_model.py"))
struct FullSizeTests {
    static let variants = ["diffusers-f32", "diffusers-f16", "sd15-f32.safetensors", "sd15-f16.safetensors"]

    func check(_ label: String, _ actual: Tensor, _ expected: Tensor) {
        #expect(actual.shape == expected.shape)
        guard actual.shape == expected.shape else { return }
        let (error, scale) = parityReport(label, actual: actual, expected: expected)
        #expect(error <= 1e-4 * scale, "\(label): max-abs error \(error), reference max \(scale)")
    }

    @Test(arguments: variants)
    func loadsAndMatchesDiffusers(variant: String) throws {
        let folder = FullSizeModel.folder!
        let reference = try SafeTensorsFile(path: folder + "/reference.safetensors")
        let start = Date()
        let checkpoint = try Checkpoint(path: folder + "/" + variant)
        let unet = try checkpoint.loadUNet()
        let vae = try checkpoint.loadVAE()
        let encoder = try checkpoint.loadTextEncoder()
        print("load \(variant): \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        #expect(checkpoint.configs.unet == .sd15 && checkpoint.configs.vae == .sd15 && checkpoint.configs.textEncoder == .sd15)

        let ids = try reference.tensor("clip.ids").scalars.map { Int($0) }
        let batch = [Array(ids[0..<77]), Array(ids[77..<154])]
        let tokenizer = try checkpoint.loadTokenizer()
        #expect(tokenizer.encode("a photo of an astronaut riding a horse on mars").ids == batch[0])
        check("SD1.5 CLIP last (\(variant))", encoder.encode(batch), try reference.tensor("clip.last"))
        check("SD1.5 CLIP skip (\(variant))", encoder.encode(batch, skippedLayers: 1), try reference.tensor("clip.skip1"))

        var t = Date()
        let eps = unet(try reference.tensor("unet.sample"), timesteps: try reference.tensor("unet.timesteps").scalars,
                       context: try reference.tensor("unet.context"))
        print("UNet 32x32 batch 2 (\(variant)): \(String(format: "%.2f", Date().timeIntervalSince(t))) s")
        check("SD1.5 UNet 32x32 (\(variant))", eps, try reference.tensor("unet.output"))

        t = Date()
        let latents = vae.encode(try reference.tensor("vae.image"))
        check("SD1.5 VAE encode 256 (\(variant))", latents, try reference.tensor("vae.latents"))
        check("SD1.5 VAE decode 256 (\(variant))", vae.decode(try reference.tensor("vae.latents")), try reference.tensor("vae.decoded"))
        print("VAE round trip 256 (\(variant)): \(String(format: "%.2f", Date().timeIntervalSince(t))) s")
    }

    /// A kohya LoRA (rank 8, alpha 4, strength 0.8) on the full-size model against diffusers'
    /// load_lora_weights + fuse_lora, and a two-chunk weighted prompt (A1111 weighting) through the
    /// text encoder and the UNet (154 context tokens).
    @Test(arguments: ["sd15-f16.safetensors", "diffusers-f32"])
    func loraAndLongPromptMatchDiffusers(variant: String) throws {
        let folder = FullSizeModel.folder!
        let reference = try SafeTensorsFile(path: folder + "/reference.safetensors")
        let checkpoint = try Checkpoint(path: folder + "/" + variant)
        let ids = try reference.tensor("clip.ids").scalars.map { Int($0) }
        let batch = [Array(ids[0..<77]), Array(ids[77..<154])]
        let sample = try reference.tensor("unet.sample"), timesteps = try reference.tensor("unet.timesteps").scalars

        // The prompt of fixtures_prompts.WEIGHTED_LONG, as the tiny fixtures hold it.
        let prompts = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("prompts.json")))) as! [String: Any]
        let long = try #require((prompts["chunks"] as! [[String: Any]]).lazy.compactMap { $0["prompt"] as? String }
            .first { $0.hasPrefix("(masterpiece:1.2), ((best quality)), a portrait") })
        let tokenizer = try checkpoint.loadTokenizer()
        let chunks = try tokenizer.chunks(long, weighting: .a1111)
        #expect(chunks.ids.count == 2)
        let plainEncoder = try checkpoint.loadTextEncoder(), plainUNet = try checkpoint.loadUNet()
        let cond = plainEncoder.encode(chunks, weighting: .a1111, emptyIDs: tokenizer.encode("").ids)
        check("SD1.5 long weighted prompt (\(variant))", cond, try reference.tensor("long.cond"))
        let context = Tensor.concatenate([cond, cond], axis: 0)  // (2, 154, 768)
        check("SD1.5 UNet, 154 context tokens (\(variant))", plainUNet(sample, timesteps: timesteps, context: context),
              try reference.tensor("long.unet.output"))

        let start = Date()
        let patches = try checkpoint.patches(LoRA(path: folder + "/lora-kohya.safetensors"), unetStrength: 0.8, textStrength: 0.8)
        let encoder = try checkpoint.loadTextEncoder(patches: patches.textEncoder), unet = try checkpoint.loadUNet(patches: patches.unet)
        print("LoRA load and patch (\(variant)): \(String(format: "%.2f", Date().timeIntervalSince(start))) s, "
              + "\(patches.unet.count) UNet and \(patches.textEncoder.count) text-encoder weights")
        let loraCond = encoder.encode(batch)
        check("SD1.5 LoRA CLIP (\(variant))", loraCond, try reference.tensor("lora.clip"))
        check("SD1.5 LoRA UNet 32x32 (\(variant))", unet(sample, timesteps: timesteps, context: loraCond), try reference.tensor("lora.unet.output"))
    }

    /// TAESD of the real architecture (random weights) in both layouts against diffusers' AutoencoderTiny.
    @Test(arguments: ["taesd", "taesd_decoder.safetensors"])
    func taesdMatchesDiffusers(layout: String) throws {
        let folder = FullSizeModel.folder!
        let reference = try SafeTensorsFile(path: folder + "/taesd-reference.safetensors")
        let taesd = try TinyAutoencoder(path: folder + "/" + layout)
        check("TAESD encode 256 (\(layout))", taesd.encode(try reference.tensor("image")), try reference.tensor("latents"))
        check("TAESD decode 256 (\(layout))", taesd.decode(try reference.tensor("latents")), try reference.tensor("decoded"))
    }

    /// The fast mode's error against diffusers (Winograd F(4,3), and bfloat16 GEMMs where the CPU has
    /// AVX-512 BF16): reported (largest and mean error, relative to the reference's largest and mean
    /// magnitude), and bounded above what it measures so that a broken kernel still fails.
    @Test func fastModeErrorAgainstDiffusers() throws {
        var fast = ComputeSettings.current
        fast.useFastMode()
        try fast.run { try checkFastMode() }
    }

    /// `fastModeErrorAgainstDiffusers` in the fast mode's settings.
    private func checkFastMode() throws {
        let folder = FullSizeModel.folder!
        let reference = try SafeTensorsFile(path: folder + "/reference.safetensors")
        let checkpoint = try Checkpoint(path: folder + "/diffusers-f32")
        let (unet, vae) = (try checkpoint.loadUNet(), try checkpoint.loadVAE())
        let mode = "fast, gemm \(ComputeSettings.current.precision.rawValue)"
        func relative(_ label: String, _ actual: Tensor, _ expected: Tensor) -> Float {
            let (error, scale) = parityReport("\(label) (\(mode))", actual: actual, expected: expected)
            let (a, e) = (actual.scalars, expected.scalars)
            let meanError = zip(a, e).map { Double(abs($0 - $1)) }.reduce(0, +), meanScale = e.map { Double(abs($0)) }.reduce(0, +)
            print("\(label) (\(mode)): mean error / mean magnitude \(meanError / meanScale)")
            #expect(meanError <= 5e-2 * meanScale, "\(label): mean error \(meanError / Double(e.count))")
            return error / scale
        }
        let eps = unet(try reference.tensor("unet.sample"), timesteps: try reference.tensor("unet.timesteps").scalars,
                       context: try reference.tensor("unet.context"))
        #expect(relative("SD1.5 UNet 32x32", eps, try reference.tensor("unet.output")) <= 1e-1)
        let latents = vae.encode(try reference.tensor("vae.image"))
        #expect(relative("SD1.5 VAE encode 256", latents, try reference.tensor("vae.latents")) <= 1e-1)
        let decoded = vae.decode(try reference.tensor("vae.latents"))
        #expect(relative("SD1.5 VAE decode 256", decoded, try reference.tensor("vae.decoded")) <= 1e-1)
    }
}

/// Opt-in: the random ControlNet of the exact SD 1.5 architecture written by
/// `tools/reference/make_sd15_controlnet.py OUT_DIR` (into the same folder as the model), from
/// A1111's single-file layout (F16, `control_model.` names) and a diffusers folder (F32).
@Suite(.serialized, .enabled(if: FullSizeModel.folder.map { FileManager.default.fileExists(atPath: $0 + "/controlnet-reference.safetensors") } ?? false,
                             "run make_sd15_controlnet.py into the SDFLOW_SD15 folder"))
struct FullSizeControlNetTests {
    @Test(arguments: ["control_sd15_random.safetensors", "controlnet-f32"])
    func residualsMatchDiffusers(variant: String) throws {
        let folder = FullSizeModel.folder!
        let reference = try SafeTensorsFile(path: folder + "/controlnet-reference.safetensors")
        let file = try ControlNetFile(path: folder + "/" + variant)
        #expect(file.config.unet.channelMultipliers == [1, 2, 4, 4] && file.config.hintWidths == [16, 32, 96, 256])
        let net = try file.load(for: .sd15)
        let start = Date()
        let result = net(try reference.tensor("sample"), timesteps: try reference.tensor("timesteps").scalars,
                         context: try reference.tensor("context"), hint: try reference.tensor("hint"), scale: 0.9)
        print("ControlNet 32x32 batch 2 (\(variant)): \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        #expect(result.down.count == 12)
        for (i, residual) in result.down.enumerated() {
            let (error, scale) = parityReport("ControlNet down \(i) (\(variant))", actual: residual, expected: try reference.tensor("down.\(i)"))
            #expect(error <= 1e-5 * scale, "down \(i): max-abs error \(error), reference max \(scale)")
        }
        let (error, scale) = parityReport("ControlNet mid (\(variant))", actual: result.middle, expected: try reference.tensor("mid"))
        #expect(error <= 1e-5 * scale)
    }
}

/// Opt-in: the random SDXL of the exact architecture written by `tools/reference/make_sdxl_model.py
/// OUT_DIR`, from the diffusers folder and the single file (both F16): one UNet call at 1024x1024
/// with CFG's batch of 2 against diffusers. Run in a release build:
///
///     SDFLOW_SDXL=OUT_DIR swift test -c release --filter FullSizeSDXL
@Suite(.serialized, .enabled(if: FullSizeModel.sdxlFolder != nil, "set SDFLOW_SDXL to the folder written by make_sdxl_model.py"))
struct FullSizeSDXLTests {
    @Test(arguments: ["diffusers-f16", "sd_xl_random.safetensors"])
    func unetStepAt1024MatchesDiffusers(variant: String) throws {
        let folder = FullSizeModel.sdxlFolder!
        let reference = try SafeTensorsFile(path: folder + "/reference.safetensors")
        let checkpoint = try Checkpoint(path: folder + "/" + variant)
        #expect(checkpoint.isSDXL && checkpoint.configs.unet.transformerDepths == [1, 2, 10] && checkpoint.configs.unet.headsPerLevel == [5, 10, 20])
        #expect(checkpoint.configs.textEncoder2?.width == 1280 && checkpoint.configs.textEncoder2?.layers == 32)
        var start = Date()
        let unet = try checkpoint.loadUNet()
        _ = try checkpoint.loadTextEncoder2()
        print("SDXL load (\(variant)): \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        start = Date()
        let added = AddedConditions(pooled: try reference.tensor("unet.text_embeds"), timeIds: try reference.tensor("unet.time_ids"))
        let eps = unet(try reference.tensor("unet.sample"), timesteps: try reference.tensor("unet.timesteps").scalars,
                       context: try reference.tensor("unet.context"), added: added)
        print("SDXL UNet 1024x1024 batch 2 (\(variant)): \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        let (error, scale) = parityReport("SDXL UNet 1024 (\(variant))", actual: eps, expected: try reference.tensor("unet.output"))
        #expect(error <= 1e-5 * scale, "max-abs error \(error), reference max \(scale)")
    }
}
