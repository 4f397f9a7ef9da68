import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// The tiny models against diffusers/transformers (float32 on the CPU), loaded from the
/// diffusers folder and from a single LDM file. Tolerance: 1e-4 of the reference's largest magnitude.
@Suite struct ModelParityTests {
    let reference: SafeTensorsFile

    init() throws { reference = try TinyModel.reference() }

    func r(_ name: String) throws -> Tensor { try reference.tensor(name) }

    func check(_ label: String, _ actual: Tensor, _ expected: Tensor) {
        #expect(actual.shape == expected.shape, "\(label): shape \(actual.shape) != \(expected.shape)")
        guard actual.shape == expected.shape else { return }
        let (error, scale) = parityReport(label, actual: actual, expected: expected)
        #expect(error <= 1e-4 * scale, "\(label): max-abs error \(error), reference max \(scale)")
    }

    /// The tiny checkpoint in both layouts (the single file uses the folder's configs, since
    /// head counts cannot be read from weights).
    static func checkpoints(in temporary: TemporaryFolder) throws -> [(String, Checkpoint)] {
        let folder = try Checkpoint(path: TinyModel.folder)
        let single = temporary.file("tiny-ldm.safetensors")
        try TinyModel.writeSingleFile(to: single)
        return [("diffusers", folder), ("single-file", try Checkpoint(path: single, configs: folder.configs))]
    }

    @Test func textEncoder() throws {
        let temporary = TemporaryFolder()
        let ids = try r("clip.ids").scalars.map { Int($0) }
        let batch = [Array(ids[0..<77]), Array(ids[77..<154])]
        for (layout, checkpoint) in try ModelParityTests.checkpoints(in: temporary) {
            let encoder = try checkpoint.loadTextEncoder()
            check("CLIP last hidden state (\(layout))", encoder.encode(batch), try r("clip.last"))
            check("CLIP clip-skip (\(layout))", encoder.encode(batch, skippedLayers: 1), try r("clip.skip1"))
            let states = encoder.hiddenStates(batch)
            check("CLIP penultimate hidden state (\(layout))", states[states.count - 2], try r("clip.penultimate"))
        }
    }

    @Test func unet() throws {
        let temporary = TemporaryFolder()
        let timesteps = try r("unet.timesteps").scalars
        for (layout, checkpoint) in try ModelParityTests.checkpoints(in: temporary) {
            let unet = try checkpoint.loadUNet()
            check("UNet (\(layout))", unet(try r("unet.sample"), timesteps: timesteps, context: try r("unet.context")),
                  try r("unet.output"))
            let context = try r("unet.context").slice(0..<1)
            check("UNet 10x14 latents (\(layout))", unet(try r("unet.odd_sample"), timesteps: [500], context: context),
                  try r("unet.odd_output"))
        }
    }

    @Test func halfPrecisionWeightsKeptAsStored() throws {
        // The tiny UNet and VAE are F16 files: kept 16-bit and widened per use, they give the same numbers.
        let checkpoint = try Checkpoint(path: TinyModel.folder, weights: .asStored)
        let unet = try checkpoint.loadUNet()
        check("UNet, F16 weights kept as stored", unet(try r("unet.sample"), timesteps: try r("unet.timesteps").scalars,
                                                       context: try r("unet.context")), try r("unet.output"))
        check("VAE decode, F16 weights kept as stored", try checkpoint.loadVAE().decode(try r("vae.latents")), try r("vae.decoded"))
    }

    @Test func widenedWeightsAreDroppedAndWidenedAgain() throws {
        // The tiny UNet is an F16 file: with float32 weights its matrices are widened into copies,
        // which the VAE decoder drops (as an F32 file's pages) and the next use widens again.
        let file = try SafeTensorsFile(path: TinyModel.folder + "/unet/diffusion_pytorch_model.safetensors")
        let key = try #require(file.names.first { file.entries[$0]?.shape.count == 4 })
        let shape = try #require(file.entries[key]?.shape)
        let weight = try ParameterStore(component: "UNet", locations: [key: .init(file: file, key: key)]).weight(key, shape: shape)
        let widened = weight.tensor().scalars
        #expect(weight.isWidenedCopyResident)
        Weight.releaseWidenedCopies()
        #expect(!weight.isWidenedCopyResident)
        #expect(weight.tensor().scalars == widened)
        #expect(widened == (try file.tensor(key).scalars))

        let checkpoint = try Checkpoint(path: TinyModel.folder)
        let unet = try checkpoint.loadUNet()
        let timesteps = try r("unet.timesteps").scalars
        let before = unet(try r("unet.sample"), timesteps: timesteps, context: try r("unet.context"))
        check("VAE decode after the UNet", try checkpoint.loadVAE().decode(try r("vae.latents")), try r("vae.decoded"))
        let after = unet(try r("unet.sample"), timesteps: timesteps, context: try r("unet.context"))
        #expect(after.scalars == before.scalars)
        check("UNet widened again after the VAE decode", after, try r("unet.output"))
    }

    @Test func inpaintingUNet() throws {
        let temporary = TemporaryFolder()
        let conv = try r("unet9.conv_in_weight")
        // The 9-channel model: the tiny weights with the reference's 9-channel conv_in.
        let folder = temporary.file("tiny-inpaint")
        try TinyModel.copyFolder(to: folder, edit: { component, tensors in
            if component == "unet" { tensors["conv_in.weight"] = conv }
        }, editConfig: { component, config in
            if component == "unet" { config["in_channels"] = 9 }
        })
        let single = temporary.file("tiny-inpaint.safetensors")
        try TinyModel.writeSingleFile(to: single) { $0["model.diffusion_model.input_blocks.0.0.weight"] = conv }
        let folderCheckpoint = try Checkpoint(path: folder)
        #expect(folderCheckpoint.configs.unet.inChannels == 9)
        #expect(try Checkpoint(path: single).configs.unet.inChannels == 9)  // inferred from conv_in
        let configs = folderCheckpoint.configs  // head and group counts are not visible in weights
        for (layout, checkpoint) in [("diffusers", folderCheckpoint), ("single-file", try Checkpoint(path: single, configs: configs))] {
            let unet = try checkpoint.loadUNet()
            check("UNet 9-channel (\(layout))",
                  unet(try r("unet9.sample"), timesteps: try r("unet.timesteps").scalars, context: try r("unet.context")),
                  try r("unet9.output"))
        }
    }

    @Test func autoencoder() throws {
        let temporary = TemporaryFolder()
        for (layout, checkpoint) in try ModelParityTests.checkpoints(in: temporary) {
            let vae = try checkpoint.loadVAE()
            let image = try r("vae.image")
            let posterior = vae.posterior(image)
            check("VAE posterior mean (\(layout))", posterior.mean, try r("vae.mean"))
            check("VAE posterior log-variance (\(layout))", posterior.logVariance, try r("vae.logvar"))
            check("VAE encode (\(layout))", vae.encode(image), try r("vae.latents"))
            check("VAE encode sampled (\(layout))", vae.encode(image, noise: try r("vae.noise")), try r("vae.sampled_latents"))
            check("VAE decode (\(layout))", vae.decode(try r("vae.latents")), try r("vae.decoded"))
        }
    }
}
