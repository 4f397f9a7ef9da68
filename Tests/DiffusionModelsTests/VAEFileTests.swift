import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// A separate full VAE (load_vae) in every layout users have, against the checkpoint's own VAE:
/// the same weights must give the same latents and pixels, bit for bit.
@Suite struct VAEFileTests {
    let temporary = TemporaryFolder()
    /// The tiny VAE's config: its 8 GroupNorm groups cannot be read from a single file's shapes.
    let tinyConfig = try! AutoencoderKL.Config.diffusers(configPath: TinyModel.folder + "/vae/config.json")

    /// The tiny VAE's tensors by LDM name (what vae-ft-mse-840000 holds), from diffusers' verified key map.
    func ldmTensors() throws -> [String: Tensor] {
        let file = try SafeTensorsFile(path: TinyModel.folder + "/" + TinyModel.weightFiles["vae"]!)
        var tensors: [String: Tensor] = [:]
        for (ldm, diffusers) in try TinyModel.keyMaps()["tiny"]!["vae"]! { tensors[ldm] = try file.tensor(diffusers) }
        return tensors
    }

    /// Encode and decode with `vae` against the checkpoint's VAE.
    func expectSameAsCheckpoint(_ vae: AutoencoderKL, _ label: String) throws {
        let reference = try Checkpoint(path: TinyModel.folder).loadVAE()
        let image = Tensor(shape: [1, 3, 16, 24], values: (0..<(3 * 16 * 24)).map { Float(sin(Double($0) * 0.37)) })
        let latents = Tensor(shape: [1, 4, 4, 6], values: (0..<96).map { Float(cos(Double($0) * 0.21)) })
        #expect(vae.encode(image).maxAbsDifference(reference.encode(image)) == 0, "\(label): encode")
        #expect(vae.decode(latents).maxAbsDifference(reference.decode(latents)) == 0, "\(label): decode")
    }

    @Test func diffusersFolders() throws {
        try expectSameAsCheckpoint(VAEFile(path: TinyModel.folder + "/vae").load(), "vae/ folder")
        try expectSameAsCheckpoint(VAEFile(path: TinyModel.folder).load(), "pipeline folder")
    }

    @Test func singleFileWithDiffusersNames() throws {
        let file = TinyModel.folder + "/" + TinyModel.weightFiles["vae"]!
        let inferred = try VAEFile(path: file).config  // levels, widths and blocks read from the shapes
        #expect(inferred.channelMultipliers == tinyConfig.channelMultipliers && inferred.baseChannels == 16
                && inferred.resBlocksPerLevel == tinyConfig.resBlocksPerLevel && inferred.latentChannels == 4)
        let vae = try VAEFile(path: file, config: tinyConfig)
        try expectSameAsCheckpoint(vae.load(), "diffusers-named file")
    }

    @Test func singleFileWithLDMNames() throws {
        var tensors = try ldmTensors()
        tensors["loss.logvar"] = Tensor(zeros: [])  // what the unpruned vae-ft-mse-840000 carries
        let plain = temporary.file("vae-ft-tiny.safetensors")
        try SafeTensorsWriter.write(tensors, storage: .f16, to: plain)
        let inferred = try VAEFile(path: plain)
        #expect(inferred.config.channelMultipliers == [1, 2, 2] && inferred.config.latentChannels == 4)
        try expectSameAsCheckpoint(VAEFile(path: plain, config: tinyConfig).load(), "LDM names")

        let prefixed = temporary.file("first-stage.safetensors")
        try SafeTensorsWriter.write(Dictionary(uniqueKeysWithValues: tensors.map { ("first_stage_model." + $0.key, $0.value) }), to: prefixed)
        try expectSameAsCheckpoint(VAEFile(path: prefixed, config: tinyConfig).load(), "first_stage_model. names")
    }

    @Test func otherFilesAreNamed() throws {
        let checkpoint = temporary.file("whole.safetensors")
        try TinyModel.writeSingleFile(to: checkpoint)
        #expect { try VAEFile(path: checkpoint) } throws: { "\($0)".contains("load_checkpoint") && "\($0)".contains(checkpoint) }
        let other = temporary.file("classifier.safetensors")
        try SafeTensorsWriter.write(["fc.weight": Tensor(zeros: [2, 2])], to: other)
        #expect { try VAEFile(path: other) } throws: { "\($0)".contains("not a full VAE") && "\($0)".contains("fc.weight") }
        var tensors = try ldmTensors()
        tensors["decoder.extra.weight"] = Tensor(zeros: [3])
        let extra = temporary.file("extra.safetensors")
        try SafeTensorsWriter.write(tensors, to: extra)
        #expect { try VAEFile(path: extra, config: tinyConfig).load() } throws: { "\($0)".contains("decoder.extra.weight") }
        #expect { try VAEFile(path: temporary.file("missing.safetensors")) } throws: { "\($0)".contains("no such file") }
        #expect(!TinyAutoencoder.recognises(TinyModel.folder + "/vae") && !TinyAutoencoder.recognises(extra))
        #expect(TinyAutoencoder.recognises(Fixtures.path("taesd")) && TinyAutoencoder.recognises(Fixtures.path("taesd-original/taesd_decoder.safetensors")))
    }
}
