import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// The generated diffusers -> LDM tables against the maps that diffusers' own converters verify.
@Suite struct KeyMapTests {
    @Test(arguments: ["tiny", "sd15"])
    func generatedTableMatchesDiffusers(shape: String) throws {
        let maps = try TinyModel.keyMaps()[shape]!
        let unetConfig = shape == "sd15" ? UNet.Config.sd15 : try UNet.Config.diffusers(configPath: TinyModel.folder + "/unet/config.json")
        let vaeConfig = shape == "sd15" ? AutoencoderKL.Config.sd15 : try AutoencoderKL.Config.diffusers(configPath: TinyModel.folder + "/vae/config.json")
        let tables: [String: DiffusersKeyMap] = ["unet": .unet(unetConfig), "vae": .vae(vaeConfig), "text_encoder": .textEncoder]
        for (component, map) in maps {
            var wrong: [String] = []
            for (ldm, diffusers) in map where tables[component]!.ldmName(diffusers) != ldm { wrong.append(diffusers) }
            #expect(wrong.isEmpty, "\(shape) \(component): \(wrong.count) names map wrongly, e.g. \(wrong.prefix(3))")
        }
        if shape == "sd15" {
            // The parameter counts of SD 1.5 (transformers 5 no longer stores position_ids).
            #expect(maps["unet"]?.count == 686 && maps["vae"]?.count == 248 && maps["text_encoder"]?.count == 196)
        }
    }

    @Test func oldVAEAttentionNamesMap() {
        let map = DiffusersKeyMap.vae(.sd15)
        #expect(map.ldmName("decoder.mid_block.attentions.0.proj_attn.weight") == "decoder.mid.attn_1.proj_out.weight")
        #expect(map.ldmName("encoder.mid_block.attentions.0.query.bias") == "encoder.mid.attn_1.q.bias")
        #expect(map.ldmName("decoder.up_blocks.0.upsamplers.0.conv.weight") == "decoder.up.3.upsample.conv.weight")
        #expect(map.ldmName("nonsense.weight") == nil)
    }
}

/// Strict loading: each kind of bad checkpoint gives its own error naming the tensor or file.
@Suite struct CheckpointLoadingTests {
    let temporary = TemporaryFolder()

    func error(_ body: () throws -> Void) -> CheckpointError? {
        do {
            try body()
            return nil
        } catch let e as CheckpointError {
            return e
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func configsInferredFromASingleFile() throws {
        let path = temporary.file("tiny.safetensors")
        try TinyModel.writeSingleFile(to: path)
        let folder = try Checkpoint(path: TinyModel.folder)
        let inferred = try Checkpoint(path: path)
        #expect(inferred.layout == .singleFile && folder.layout == .diffusers)
        var expected = folder.configs
        // Not visible in weights: SD 1.x's 8 heads, one CLIP head per 64 channels, 32 groups.
        expected.unet.headsPerLevel = [8, 8, 8]
        expected.unet.groups = 32
        expected.textEncoder.heads = 1
        #expect(inferred.configs.unet == expected.unet)
        #expect(inferred.configs.vae.channelMultipliers == expected.vae.channelMultipliers)
        #expect(inferred.configs.vae.baseChannels == 16 && inferred.configs.vae.resBlocksPerLevel == 2)
        #expect(inferred.configs.textEncoder == expected.textEncoder)
    }

    @Test func missingTensor() throws {
        let path = temporary.file("missing.safetensors")
        try TinyModel.writeSingleFile(to: path) { $0["model.diffusion_model.middle_block.1.proj_out.weight"] = nil }
        let checkpoint = try Checkpoint(path: path, configs: try Checkpoint(path: TinyModel.folder).configs)
        let e = error { _ = try checkpoint.loadUNet() }
        #expect(e == .missingTensor(component: "UNet", name: "middle_block.1.proj_out.weight", expectedShape: [32, 32, 1, 1]))
        #expect(e?.description.contains("middle_block.1.proj_out.weight") == true)
    }

    @Test func wrongShape() throws {
        let path = temporary.file("shape.safetensors")
        try TinyModel.writeSingleFile(to: path) { $0["first_stage_model.encoder.conv_out.bias"] = Tensor(zeros: [7]) }
        let checkpoint = try Checkpoint(path: path, configs: try Checkpoint(path: TinyModel.folder).configs)
        let e = error { _ = try checkpoint.loadVAE() }
        #expect(e == .shapeMismatch(component: "VAE", name: "first_stage_model.encoder.conv_out.bias", file: path, expected: [8], found: [7]))
    }

    @Test func unexpectedTensors() throws {
        let path = temporary.file("extra.safetensors")
        try TinyModel.writeSingleFile(to: path) { $0["model.diffusion_model.input_blocks.1.0.extra.weight"] = Tensor(zeros: [1]) }
        let checkpoint = try Checkpoint(path: path, configs: try Checkpoint(path: TinyModel.folder).configs)
        let e = error { _ = try checkpoint.loadUNet() }
        #expect(e == .unexpectedTensor(component: "UNet", name: "model.diffusion_model.input_blocks.1.0.extra.weight", file: path, count: 1))

        let stray = temporary.file("stray.safetensors")
        try TinyModel.writeSingleFile(to: stray) { $0["lora_unet_down.alpha"] = Tensor(zeros: [1]) }
        guard case .notACheckpoint(_, let reason)? = error({ _ = try Checkpoint(path: stray) }) else {
            Issue.record("a stray key was accepted"); return
        }
        #expect(reason.contains("lora_unet_down.alpha"))

        let folder = temporary.file("extra-folder")
        try TinyModel.copyFolder(to: folder, edit: { component, tensors in
            if component == "vae" { tensors["decoder.mystery.weight"] = Tensor(zeros: [2]) }
        })
        guard case .unexpectedTensor(_, "decoder.mystery.weight", _, _)? = error({ _ = try Checkpoint(path: folder) }) else {
            Issue.record("an unknown diffusers key was accepted"); return
        }
    }

    @Test func notACheckpoint() throws {
        let path = temporary.file("weights.safetensors")
        try SafeTensorsWriter.write(["classifier.weight": Tensor(zeros: [3, 3])], to: path)
        guard case .notACheckpoint(path, _)? = error({ _ = try Checkpoint(path: path) }) else {
            Issue.record("a foreign file was accepted"); return
        }
        let pickle = temporary.file("model.ckpt")
        _ = FileManager.default.createFile(atPath: pickle, contents: Data([0x80, 0x02]))
        #expect { _ = try Checkpoint(path: pickle) } throws: { "\($0)".contains(pickle) }
        guard case .notACheckpoint? = error({ _ = try Checkpoint(path: temporary.file("nothing-here")) }) else {
            Issue.record("a missing path was accepted"); return
        }
        let empty = temporary.file("empty-folder")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        guard case .notACheckpoint(_, let why)? = error({ _ = try Checkpoint(path: empty) }) else {
            Issue.record("an empty folder was accepted"); return
        }
        #expect(why.contains("config.json"))
    }

    /// Shapes the configs are inferred from, malformed: each gives an error, none a crash (the
    /// fuzzer found a token embedding with one dimension reading its missing width).
    @Test(arguments: [
        ("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", [1000]),
        ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight", [Int]()),
        ("cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight", [0, 16]),
        ("model.diffusion_model.input_blocks.0.0.weight", [0, 4, 3, 3]),
        ("model.diffusion_model.input_blocks.1.0.in_layers.2.weight", [Int]()),
        ("model.diffusion_model.input_blocks.1.0.in_layers.2.weight", [7, 32, 3, 3]),
        ("model.diffusion_model.out.2.weight", [4]),
        ("model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight", [64]),
        ("first_stage_model.encoder.conv_in.weight", [0, 3, 3, 3]),
        ("first_stage_model.encoder.down.0.block.0.conv1.weight", [Int]()),
        ("first_stage_model.post_quant_conv.weight", [4]),
    ])
    func malformedShapesAreErrors(name: String, shape: [Int]) throws {
        let path = temporary.file("malformed.safetensors")
        try TinyModel.writeSingleFile(to: path) { $0[name] = Tensor(zeros: shape) }
        #expect(throws: CheckpointError.self) {
            let checkpoint = try Checkpoint(path: path)
            _ = try checkpoint.loadTextEncoder()
            _ = try checkpoint.loadVAE()
            _ = try checkpoint.loadUNet()
        }
    }

    /// The fuzzer's inputs that crashed the checkpoint loader, loaded as its harness loads them
    /// (the header, then zeros for the data): refused, not a crash.
    @Test(arguments: ["checkpoint-text-width-missing-1.json", "checkpoint-text-width-missing-2.json"])
    func fuzzFindingsAreRefused(name: String) throws {
        let header = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("fuzz/" + name)))
        var file = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Data($0) }
        file += header
        file += Data(count: 2 << 20)
        let path = temporary.file("finding.safetensors")
        try file.write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) {
            let checkpoint = try Checkpoint(path: path)
            _ = try checkpoint.loadTextEncoder()
            _ = try checkpoint.loadVAE()
            _ = try checkpoint.loadUNet()
        }
    }

    @Test func otherModelFamiliesAreNamed() throws {
        let sd2 = temporary.file("sd2.safetensors")
        try TinyModel.writeSingleFile(to: sd2) { $0["cond_stage_model.model.token_embedding.weight"] = Tensor(zeros: [4, 4]) }
        guard case .unsupportedModel(_, let reason)? = error({ _ = try Checkpoint(path: sd2) }) else {
            Issue.record("SD 2 not recognised"); return
        }
        #expect(reason.contains("SD 2"))
        let xl = temporary.file("xl.safetensors")
        try SafeTensorsWriter.write(["conditioner.embedders.0.model.ln_final.weight": Tensor(zeros: [4])], to: xl)
        guard case .unsupportedModel(_, let xlReason)? = error({ _ = try Checkpoint(path: xl) }) else {
            Issue.record("the SDXL refiner not recognised"); return
        }
        #expect(xlReason.contains("SDXL refiner"))
    }

    @Test func otherModelFamiliesAreNamedInDiffusersFolders() throws {
        // Each case: a copy of the tiny SD 1.x folder with one config edited as in SD 2.x, the SDXL refiner or a v-prediction model.
        let cases: [(file: String, key: String, value: Any, says: String)] = [
            ("unet/config.json", "use_linear_projection", true, "SD 2.x UNet"),
            ("unet/config.json", "cross_attention_dim", 1024, "SD 2.x UNet"),
            ("text_encoder/config.json", "hidden_size", 1024, "SD 2.x text encoder"),
            ("unet/config.json", "projection_class_embeddings_input_dim", 2560, "SDXL refiner"),
            ("scheduler/scheduler_config.json", "prediction_type", "v_prediction", "v_prediction-prediction"),
        ]
        for (index, test) in cases.enumerated() {
            let folder = temporary.file("family-\(index)")
            try TinyModel.copyFolder(to: folder, edit: { _, _ in })
            let file = folder + "/" + test.file
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            var config = (FileManager.default.contents(atPath: file).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }) ?? [:]
            config[test.key] = test.value
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: file))
            guard case .unsupportedModel(let path, let reason)? = error({ _ = try Checkpoint(path: folder) }) else {
                Issue.record("\(test.file) with \(test.key) = \(test.value) loaded as SD 1.x"); continue
            }
            #expect(path == file && reason.contains(test.says), "\(path): \(reason)")
        }
    }

    @Test func componentMissingFromSingleFile() throws {
        let path = temporary.file("no-vae.safetensors")
        try TinyModel.writeSingleFile(to: path) { tensors in
            for key in tensors.keys where key.hasPrefix("first_stage_model.") { tensors[key] = nil }
        }
        let checkpoint = try Checkpoint(path: path, configs: try Checkpoint(path: TinyModel.folder).configs)
        guard case .notACheckpoint(_, let reason)? = error({ _ = try checkpoint.loadVAE() }) else {
            Issue.record("a missing VAE was not reported"); return
        }
        #expect(reason.contains("first_stage_model"))
        _ = try checkpoint.loadUNet()  // the other parts still load
    }

    @Test func transformers5TextEncoderNamesAndShards() throws {
        // transformers 5 saves CLIPTextModel without `text_model.`; shards come with an index.
        let folder = temporary.file("t5-names")
        try TinyModel.copyFolder(to: folder, edit: { component, tensors in
            if component == "text_encoder" {
                tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst("text_model.".count)), $0.value) })
            }
        })
        let reference = try Checkpoint(path: TinyModel.folder).loadTextEncoder()
        let renamed = try Checkpoint(path: folder).loadTextEncoder()
        let ids = [[49406, 320, 1125, 49407] + Array(repeating: 49407, count: 73)]
        #expect(renamed.encode(ids).maxAbsDifference(reference.encode(ids)) == 0)

        // Split the UNet into two shards with an index.
        let unetFolder = folder + "/unet"
        let whole = try SafeTensorsFile(path: unetFolder + "/diffusion_pytorch_model.safetensors")
        var shards: [[String: Tensor]] = [[:], [:]]
        var weightMap: [String: String] = [:]
        for (i, name) in whole.names.enumerated() {
            shards[i % 2][name] = try whole.tensor(name)
            weightMap[name] = "diffusion_pytorch_model-0000\(i % 2 + 1)-of-00002.safetensors"
        }
        for (i, shard) in shards.enumerated() {
            try SafeTensorsWriter.write(shard, to: unetFolder + "/diffusion_pytorch_model-0000\(i + 1)-of-00002.safetensors")
        }
        try FileManager.default.removeItem(atPath: unetFolder + "/diffusion_pytorch_model.safetensors")
        try JSONSerialization.data(withJSONObject: ["weight_map": weightMap])
            .write(to: URL(fileURLWithPath: unetFolder + "/diffusion_pytorch_model.safetensors.index.json"))
        let sharded = try Checkpoint(path: folder).loadUNet()
        let x = Tensor(repeating: 0.5, shape: [1, 4, 8, 8]), context = Tensor(repeating: 0.1, shape: [1, 77, 16])
        let original = try Checkpoint(path: TinyModel.folder).loadUNet()
        #expect(sharded(x, timesteps: [10], context: context).maxAbsDifference(original(x, timesteps: [10], context: context)) == 0)
    }
}
