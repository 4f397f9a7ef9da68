import DiffusionModels
import Foundation
import ImageIO
import SafeTensors
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// The SDXL workflows on the tiny SDXL (Tests/Fixtures/tiny-sdxl): their images are the decodes of
/// diffusers' StableDiffusionXLPipeline latents for the same seed (sdxl-reference.safetensors); an
/// SD 1.x text encoder's conditioning for an SDXL UNet is an error naming the denoise.
@Suite struct SDXLWorkflowTests {
    let folder = TemporaryFolder()
    let reference: SafeTensorsFile

    init() throws { reference = try Fixtures.tensors("sdxl-reference.safetensors") }

    func run(_ workflow: String, _ overrides: [String: String]) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: TestEngine.workflows + "/" + workflow), registry: TestEngine.registry(),
                              overrides: overrides, currentDirectory: folder.path)
        return Executor(graph: graph, options: Executor.Options()).run()
    }

    /// The saved image against the decode of the reference latents: within 8-bit rounding.
    func expectImage(_ path: String, decodes key: String) throws {
        let vae = try Checkpoint(path: Fixtures.path("tiny-sdxl")).loadVAE()
        let expected = Image(modelOutput: vae.decode(try reference.tensor(key)))
        let image = try ImageFile.read(path)
        #expect(image.width == 64 && image.height == 64)
        let difference = image.pixels.maxAbsDifference(expected.pixels)
        #expect(difference <= 1.5 / 255, "\(key): \(difference * 255)/255 from diffusers' image")
    }

    @Test func textToImageMatchesDiffusers() throws {
        let report = try run("sdxl-txt2img.yaml", ["checkpoint": Fixtures.path("tiny-sdxl"), "width": "64", "height": "64", "steps": "5",
                                                   "cfg": "5", "seed": "42", "prompt": reference.metadata["prompt"]!,
                                                   "negative": reference.metadata["negative"]!, "output": folder.file("xl.png")])
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        try expectImage(folder.file("xl.png"), decodes: "txt2img.seeded")
    }

    @Test func turboInTwoStepsMatchesDiffusers() throws {
        let report = try run("sdxl-turbo.yaml", ["checkpoint": Fixtures.path("tiny-sdxl"), "width": "64", "height": "64", "steps": "2",
                                                 "seed": "43", "prompt": reference.metadata["prompt"]!, "output": folder.file("turbo.png")])
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        try expectImage(folder.file("turbo.png"), decodes: "turbo")
    }

    /// load_lora with an SDXL LoRA: both text encoders and the UNet change the image; an SD 1.x LoRA is refused.
    @Test func sdxlLoRAInAWorkflow() throws {
        func yaml(_ lora: String, _ name: String = "sd15") -> String {
            """
            version: 1
            nodes:
              model: {type: load_checkpoint, path: \(Fixtures.path("tiny-sdxl"))}
              styled: {type: load_lora, unet: !ref model.unet, clip: !ref model.clip, path: "\(lora)", strength_model: 0.8, strength_clip: 0.8}
              positive: {type: clip_encode, clip: !ref styled.clip, text: a house}
              negative: {type: clip_encode, clip: !ref styled.clip, text: ""}
              blank: {type: empty_latent, vae: !ref model.vae, width: 64, height: 64}
              generated: {type: denoise, unet: !ref styled.unet, positive: !ref positive, negative: !ref negative, latent: !ref blank, steps: 2, seed: 5}
              image: {type: vae_decode, vae: !ref model.vae, latent: !ref generated}
              save: {type: save_image, image: !ref image, path: "\(folder.file(name))/out-{seed}.png"}
            """
        }
        var images: [[Float]] = []
        for (name, lora) in [("plain", ""), ("lora", Fixtures.path("tiny-sdxl-lora.safetensors"))] {
            try yaml(lora, name).write(toFile: folder.file("\(name).yaml"), atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: folder.file(name), withIntermediateDirectories: true)
            let graph = try Graph(workflow: Workflow.load(path: folder.file("\(name).yaml")), registry: TestEngine.registry(),
                                  overrides: [:], currentDirectory: folder.file(name))
            let report = Executor(graph: graph, options: Executor.Options()).run()
            #expect(report.succeeded, "\(name): \(report.nodes.flatMap(\.errors))")
            images.append(try ImageFile.read(folder.file("\(name)/out-5.png")).pixels.scalars)
        }
        #expect(images[0] != images[1])
        try yaml(Fixtures.path("lora/kohya.safetensors")).write(toFile: folder.file("sd15.yaml"), atomically: true, encoding: .utf8)
        let graph = try Graph(workflow: Workflow.load(path: folder.file("sd15.yaml")), registry: TestEngine.registry(), currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options()).run()
        #expect(report.nodes.first { $0.name == "styled" }?.errors.joined().contains("an SD 1.x LoRA") == true)
    }

    @Test func imageToImageRunsAndMixingFamiliesIsAnError() throws {
        try ImageFile.write(Image(pixels: try reference.tensor("image")), to: folder.file("photo.png"))
        let report = try run("sdxl-img2img.yaml", ["checkpoint": Fixtures.path("tiny-sdxl"), "image": folder.file("photo.png"), "steps": "4",
                                                   "output": folder.file("i2i.png")])
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        // An SD 1.x checkpoint's conditioning for the SDXL UNet.
        let yaml = """
            version: 1
            nodes:
              xl: {type: load_checkpoint, path: \(Fixtures.path("tiny-sdxl"))}
              sd: {type: load_checkpoint, path: \(TinyModel.folder)}
              positive: {type: clip_encode, clip: !ref sd.clip, text: a house}
              blank: {type: empty_latent, vae: !ref xl.vae, width: 64, height: 64}
              generated: {type: denoise, unet: !ref xl.unet, positive: !ref positive, negative: !ref positive, latent: !ref blank, steps: 2}
              image: {type: vae_decode, vae: !ref xl.vae, latent: !ref generated}
              save: {type: save_image, image: !ref image, path: \(folder.file("mixed.png"))}
            """
        try yaml.write(toFile: folder.file("mixed.yaml"), atomically: true, encoding: .utf8)
        let graph = try Graph(workflow: Workflow.load(path: folder.file("mixed.yaml")), registry: TestEngine.registry(), currentDirectory: folder.path)
        let mixed = Executor(graph: graph, options: Executor.Options()).run()
        let errors = mixed.nodes.first { $0.name == "generated" }?.errors.joined() ?? ""
        #expect(!mixed.succeeded && errors.contains("does not fit this UNet"), "\(errors)")
    }
}
