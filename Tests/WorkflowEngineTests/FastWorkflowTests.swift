import Foundation
import ImageIO
import TestSupport
import Testing
import WorkflowEngine

/// workflows/txt2img-fast.yaml with a LoRA and TAESD on the tiny model, and live previews: where
/// they are written, in a batch one per item, and that they change no cache key.
@Suite struct FastWorkflowTests {
    let folder = TemporaryFolder()

    func run(_ workflow: String, _ overrides: [String: String], nodeDefaults: [String: String] = [:],
             cache: ResultCache? = nil) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: TestEngine.workflows + "/" + workflow), registry: TestEngine.registry(),
                              overrides: overrides, nodeDefaults: nodeDefaults, currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options(cache: cache)).run()
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        return report
    }

    func status(_ report: RunReport, _ node: String) -> NodeReport.Status? { report.nodes.first { $0.name == node }?.status }

    @Test func fastWorkflowWithLoRATAESDAndPreviews() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        let overrides = ["checkpoint": TinyModel.folder, "lora": Fixtures.path("lora/kohya.safetensors"),
                         "taesd": Fixtures.path("taesd-original/taesd_decoder.safetensors"), "output": folder.file("fast.png")]
        _ = try run("txt2img-fast.yaml", overrides, nodeDefaults: ["preview": folder.file("previews"), "preview_every": "2"], cache: cache)
        // The tiny UNet works on 16x16 latents; TAESD upsamples them 8 times.
        let image = try ImageFile.read(folder.file("fast.png"))
        #expect(image.width == 128 && image.height == 128)
        let preview = try ImageFile.read(folder.file("previews/generated.png"))
        #expect(preview.width == 16 && preview.height == 16)  // the linear projection, at latent size

        // Preview settings are no part of the keys: another folder, interval or TAESD finds the cache.
        let again = try run("txt2img-fast.yaml", overrides,
                            nodeDefaults: ["preview": folder.file("other"), "preview_every": "1",
                                           "preview_taesd": Fixtures.path("taesd")], cache: cache)
        #expect(status(again, "generated") == .diskHit)

        // Without the cache: TAESD previews at full size.
        _ = try run("txt2img-fast.yaml", overrides, nodeDefaults: ["preview": folder.file("taesd-previews"),
                                                                   "preview_taesd": Fixtures.path("taesd")])
        let full = try ImageFile.read(folder.file("taesd-previews/generated.png"))
        #expect(full.width == 128 && full.height == 128)
    }

    @Test func batchKeepsOnePreviewPerItem() throws {
        let photos = folder.file("photos")
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        for name in ["a", "b"] { try ImageFile.write(Image(width: 64, height: 64, channels: 3), to: photos + "/\(name).png") }
        _ = try run("batch-img2img.yaml", ["checkpoint": TinyModel.folder, "steps": "2", "input": photos, "output": folder.file("out/{stem}.png")],
                    nodeDefaults: ["preview": folder.file("previews")])
        let previews = try FileManager.default.contentsOfDirectory(atPath: folder.file("previews")).sorted()
        #expect(previews == ["generated-a.png", "generated-b.png"])
    }
}
