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
