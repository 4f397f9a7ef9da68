import Foundation
import ImageIO
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// workflows/batch-controlnet.yaml on the tiny model with a tiny ControlNet: the canny edges of each
/// photo steer its own img2img pass; results are cached by the ControlNet's file, settings and
/// control image; bad ControlNets get errors naming the node.
@Suite struct ControlNetWorkflowTests {
    let folder = TemporaryFolder()

    func run(_ workflow: String, _ overrides: [String: String], cache: ResultCache? = nil) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: TestEngine.workflows + "/" + workflow), registry: TestEngine.registry(),
                              overrides: overrides, currentDirectory: folder.path)
        return Executor(graph: graph, options: Executor.Options(cache: cache)).run()
    }

    /// Three 64x64 photos (two of the canny fixtures' scenes, cropped, and the docs photo).
    func photos(_ names: [String] = ["a", "b", "c"]) throws -> String {
        let photos = folder.file("photos-\(names.joined())")
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        for (i, name) in ["a", "b", "c"].enumerated() where names.contains(name) {
            let image = try ImageFile.read(Fixtures.path("canny/photo\([0, 3, 4][i]).png"))
            try ImageFile.write(image.cropped(PixelRect(x: 0, y: 0, width: 64, height: 64)), to: photos + "/\(name).png")
        }
        return photos
    }

    func overrides(_ extra: [String: String]) -> [String: String] {
        ["checkpoint": TinyModel.folder, "controlnet": Fixtures.path("controlnet/tiny-a-ldm.safetensors"), "steps": "4",
         "low_threshold": "50", "high_threshold": "150"].merging(extra) { $1 }
    }

    func pixels(_ path: String) throws -> [Float] { try ImageFile.read(path).pixels.scalars }

    @Test func eachPhotoIsSteeredByItsOwnEdges() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        let all = try photos()
        let report = try run("batch-controlnet.yaml", overrides(["input": all, "output": folder.file("out/{stem}.png"),
                                                                 "lora": Fixtures.path("lora/kohya.safetensors")]), cache: cache)
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.file("out")).sorted() == ["a.png", "b.png", "c.png"])

        // Photo b alone gives the same image: its own edges steered it.
        let alone = try run("batch-controlnet.yaml", overrides(["input": try photos(["b"]), "output": folder.file("alone/{stem}.png"),
                                                                "lora": Fixtures.path("lora/kohya.safetensors")]))
        #expect(alone.succeeded)
        #expect(try pixels(folder.file("alone/b.png")) == pixels(folder.file("out/b.png")))

        // Again: everything from the cache. Another ControlNet strength: computed again.
        let again = try run("batch-controlnet.yaml", overrides(["input": all, "output": folder.file("out/{stem}.png"),
                                                                "lora": Fixtures.path("lora/kohya.safetensors")]), cache: cache)
        #expect(again.nodes.first { $0.name == "generated" }?.computed == 0)
        let stronger = try run("batch-controlnet.yaml", overrides(["input": all, "output": folder.file("strong/{stem}.png"),
                                                                   "lora": Fixtures.path("lora/kohya.safetensors"), "control_strength": "0.5"]),
                               cache: cache)
        #expect(stronger.nodes.first { $0.name == "generated" }?.computed == 3)
        #expect(try pixels(folder.file("strong/a.png")) != pixels(folder.file("out/a.png")))
    }

    /// At strength 0 the ControlNet adds nothing: the image is batch-img2img's.
    @Test func strengthZeroIsPlainImageToImage() throws {
        let all = try photos(["a"])
        let common = ["checkpoint": TinyModel.folder, "steps": "4", "input": all, "strength": "0.75", "cfg": "7", "sampler": "euler_a",
                      "prompt": "a watercolour painting"]
        #expect(try run("batch-controlnet.yaml", overrides(common.merging(["output": folder.file("zero/{stem}.png"), "control_strength": "0"]) { $1 })).succeeded)
        #expect(try run("batch-img2img.yaml", common.merging(["output": folder.file("plain/{stem}.png")]) { $1 }).succeeded)
        #expect(try pixels(folder.file("zero/a.png")) == pixels(folder.file("plain/a.png")))
    }

    /// Inpainting with the inpaint ControlNet's mask input, a control image of another size fitted by
    /// each resize mode, and the few-step LCM path at guidance 1 (one UNet call per step).
    @Test func inpaintingResizeModesAndFewSteps() throws {
        let photo = try ImageFile.read(Fixtures.path("canny/photo4.png")).cropped(PixelRect(x: 0, y: 0, width: 64, height: 64))
        try ImageFile.write(photo, to: folder.file("photo.png"))
        let control = try ImageFile.read(Fixtures.path("canny/photo1.png")).cropped(PixelRect(x: 0, y: 0, width: 40, height: 90))
        try ImageFile.write(control, to: folder.file("control.png"))
        var mask = Image(width: 64, height: 64, channels: 1)
        for y in 16..<48 { for x in 16..<48 { mask.pixels.mutablePointer()[y * 64 + x] = 1 } }
        try ImageFile.write(mask, to: folder.file("mask.png"))
        let yaml = """
            version: 1
            parameters: {resize: crop_and_resize, sampler: euler, cfg: 5, steps: 3, output: out.png}
            nodes:
              model: {type: load_checkpoint, path: \(TinyModel.folder)}
              photo: {type: load_image, path: photo.png}
              edges: {type: load_image, path: control.png}
              mask: {type: load_mask, path: mask.png}
              net: {type: load_controlnet, path: \(Fixtures.path("controlnet/tiny-a-v10.pth"))}
              inpaint: {type: apply_controlnet, controlnet: !ref net, image: !ref photo, mask: !ref mask}
              control: {type: apply_controlnet, controlnet: !ref net, image: !ref edges, control: !ref inpaint, resize_mode: !param resize, strength: 0.7}
              positive: {type: clip_encode, clip: !ref model.clip, text: a house}
              negative: {type: clip_encode, clip: !ref model.clip, text: ""}
              encoded: {type: vae_encode, vae: !ref model.vae, image: !ref photo}
              generated: {type: denoise, unet: !ref model.unet, positive: !ref positive, negative: !ref negative, latent: !ref encoded,
                          mask: !ref mask, control: !ref control, sampler: !param sampler, cfg: !param cfg, steps: !param steps, seed: 3}
              image: {type: vae_decode, vae: !ref model.vae, latent: !ref generated}
              save: {type: save_image, image: !ref image, path: !param output}
            """
        let path = folder.file("inpaint-controlnet.yaml")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        var outputs: [[Float]] = []
        for (mode, sampler, cfg) in [("crop_and_resize", "euler", "5"), ("just_resize", "euler", "5"), ("resize_and_fill", "euler", "5"),
                                     ("crop_and_resize", "lcm", "1")] {
            let graph = try Graph(workflow: Workflow.load(path: path), registry: TestEngine.registry(),
                                  overrides: ["resize": mode, "sampler": sampler, "cfg": cfg, "output": folder.file("\(mode)-\(sampler).png")],
                                  currentDirectory: folder.path)
            let report = Executor(graph: graph, options: Executor.Options()).run()
            #expect(report.succeeded, "\(mode) \(sampler): \(report.nodes.flatMap(\.errors))")
            outputs.append(try pixels(folder.file("\(mode)-\(sampler).png")))
        }
        // Each way of fitting the control image gives another image.
        #expect(Set(outputs.map { $0.hashValue }).count == 4)
    }

    @Test func badControlNetsAreErrorsNamingTheNode() throws {
        let all = try photos(["a"])
        for (file, expected) in [("controlnet/sd21-like.safetensors", "SD 2.x ControlNet"), ("controlnet/t2i-adapter.safetensors", "T2I-Adapter")] {
            let report = try run("batch-controlnet.yaml", overrides(["input": all, "output": folder.file("bad/{stem}.png"),
                                                                     "controlnet": Fixtures.path(file)]))
            #expect(!report.succeeded)
            let errors = report.nodes.filter { !$0.errors.isEmpty }
            #expect(errors.contains { $0.name == "canny_net" && $0.errors.joined().contains(expected) }, "\(file): \(errors.map { ($0.name, $0.errors) })")
        }
        // A missing file: refused before anything runs, at the workflow's line.
        do {
            _ = try run("batch-controlnet.yaml", overrides(["input": all, "controlnet": Fixtures.path("controlnet/none.safetensors")]))
            Issue.record("a missing ControlNet was not refused")
        } catch {
            #expect("\(error)".contains("batch-controlnet.yaml:") && "\(error)".contains("'canny_net'") && "\(error)".contains("no such file"))
        }
    }
}
