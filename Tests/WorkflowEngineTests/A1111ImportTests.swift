import Foundation
import ImageIO
import TestSupport
import Testing
import WorkflowEngine

/// AUTOMATIC1111 recipes (Tests/Fixtures/a1111, written by tools/reference/fixtures_a1111.py with
/// Pillow and piexif as A1111 writes them): the text read back from PNG, JPEG and WebP, parsed as
/// A1111's own parser does, and the imported workflow run on the tiny model.
@Suite struct A1111ImportTests {
    struct Expected: Decodable {
        let text: String, prompt: String, negative: String
        let settings: [[String]]
    }

    let expected: [String: Expected]
    let folder = TemporaryFolder()

    init() throws {
        expected = try JSONDecoder().decode([String: Expected].self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("a1111/expected.json"))))
    }

    /// The parameters text an image carries (PNG text chunk or EXIF UserComment).
    func text(of name: String) throws -> String? {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("a1111/" + name)))
        return ExifText.userComment(data) ?? (try? ImageFile.decode(data, name: name))?.metadata["parameters"]
    }

    @Test(arguments: ["txt2img.png", "img2img.jpg", "hires.webp"])
    func readsAndParsesLikeA1111(name: String) throws {
        let reference = try #require(expected[name])
        #expect(try text(of: name) == reference.text)
        let parsed = try #require(A1111Parameters(text: reference.text))
        #expect(parsed.prompt == reference.prompt)
        #expect(parsed.negativePrompt == reference.negative)
        #expect(parsed.settings.map { [$0.key, $0.value] } == reference.settings)
    }

    @Test func mapsSettingsAndSaysWhatItCannot() throws {
        let txt2img = A1111Import(try #require(A1111Parameters(text: expected["txt2img.png"]!.text)), source: "txt2img.png")
        for line in ["sampler: dpmpp_2m", "steps: 25", "cfg: 7.5", "seed: 1234567890", "width: 512", "height: 768", "clip_skip: 2",
                     "schedule: karras", "lora_detail_tweaker_strength: 0.6", "type: load_lora"] {
            #expect(txt2img.yaml.contains(line), "missing '\(line)'")
        }
        #expect(!txt2img.yaml.contains("<lora:"))
        #expect(txt2img.notes.contains { $0.contains("ENSD: 31337") })
        #expect(txt2img.notes.contains { $0.contains("GPU") })

        let img2img = A1111Import(try #require(A1111Parameters(text: expected["img2img.jpg"]!.text)), source: "img2img.jpg")
        #expect(img2img.yaml.contains("strength: 0.45") && img2img.yaml.contains("type: vae_encode"))
        #expect(img2img.yaml.contains("lora_style_a") && img2img.yaml.contains("lora_style_b_strength: 1"))
        #expect(!img2img.notes.contains { $0.contains("GPU") })  // RNG: CPU

        let hires = A1111Import(try #require(A1111Parameters(text: expected["hires.webp"]!.text)), source: "hires.webp")
        #expect(hires.notes.contains { $0.contains("DPM++ SDE") } && !hires.notes.contains { $0.contains("hires fix") }, "\(hires.notes)")
        #expect(hires.yaml.contains("type: empty_latent"))  // the first pass of a hires fix is txt2img
        // Hires upscale 2 with the "Latent" upscaler, 10 hires steps, denoising strength 0.7: a second pass.
        for line in ["hires_width: 1024", "hires_height: 1024", "hires_upscaler: bilinear", "hires_steps: 10", "hires_strength: 0.7",
                     "type: upscale_latent", "latent: !ref upscaled", "latent: !ref hires}"] {
            #expect(hires.yaml.contains(line), "\(line) in\n\(hires.yaml)")
        }
        let overrides = ["checkpoint": TinyModel.folder, "steps": "2", "hires_steps": "2", "width": "32", "height": "32",
                         "hires_width": "64", "hires_height": "48"]
        let image = try runImported(hires, overrides, output: "hires.png")
        #expect(image.width == 64 && image.height == 48)
        // An upscaler model: the hires fix in image space, the model's file given with --set; it runs.
        let esrgan = A1111Import(try #require(A1111Parameters(text: expected["hires.webp"]!.text.replacingOccurrences(
            of: "Hires upscaler: Latent", with: "Hires upscaler: R-ESRGAN 4x+"))), source: "hires.webp")
        #expect(esrgan.notes.contains { $0.contains("'R-ESRGAN 4x+'") && $0.contains("--set hires_upscaler_model=") })
        #expect(!esrgan.yaml.contains("upscale_latent") && esrgan.yaml.contains("type: load_upscaler") && esrgan.yaml.contains("type: upscale_image"))
        let withModel = overrides.merging(["hires_upscaler_model": Fixtures.path("upscalers/compact-x2.safetensors")]) { $1 }
        let esrganImage = try runImported(esrgan, withModel, output: "esrgan.png")
        #expect(esrganImage.width == 64 && esrganImage.height == 48)
        // A plain resize (Lanczos) needs no file.
        let lanczos = A1111Import(try #require(A1111Parameters(text: expected["hires.webp"]!.text.replacingOccurrences(
            of: "Hires upscaler: Latent", with: "Hires upscaler: Lanczos"))), source: "hires.webp")
        #expect(lanczos.yaml.contains("hires_upscaler: lanczos") && lanczos.yaml.contains("type: resize_image") && !lanczos.yaml.contains("load_upscaler"))
    }

    /// Runs an imported workflow with `overrides` and returns the image it saved as `output` (in the test folder).
    func runImported(_ imported: A1111Import, _ overrides: [String: String], output: String) throws -> Image {
        let path = folder.file(output + ".yaml")
        try imported.yaml.write(toFile: path, atomically: true, encoding: .utf8)
        let graph = try Graph(workflow: Workflow.load(path: path), registry: TestEngine.registry(),
                              overrides: overrides.merging(["output": folder.file(output)]) { $1 }, currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options(cache: nil)).run()
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        return try ImageFile.read(folder.file(output))
    }

    @Test func runsAnA1111ImageWithTheModelAndLoRAGiven() throws {
        // Workflow.load reads the recipe from the PNG; --set gives the files and a small, short run.
        let workflow = try Workflow.load(path: Fixtures.path("a1111/txt2img.png"))
        let overrides = ["checkpoint": TinyModel.folder, "lora_detail_tweaker": Fixtures.path("lora/kohya.safetensors"),
                         "steps": "2", "width": "64", "height": "64", "output": folder.file("out.png")]
        let graph = try Graph(workflow: workflow, registry: TestEngine.registry(), overrides: overrides, currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options(cache: nil)).run()
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        let image = try ImageFile.read(folder.file("out.png"))
        #expect(image.width == 64 && image.height == 64)
    }

    /// A1111's "SD VAE" setting becomes a load_vae whose file replaces the checkpoint's VAE everywhere;
    /// left empty, the checkpoint's own VAE passes through.
    @Test func importsTheVAESetting() throws {
        let text = expected["txt2img.png"]!.text + ", VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.ckpt"
        let imported = A1111Import(try #require(A1111Parameters(text: text)), source: "txt2img.png")
        #expect(imported.notes.contains { $0.contains("vae-ft-mse-840000-ema-pruned.ckpt") && $0.contains("--set vae=") })
        #expect(!imported.notes.contains { $0.contains("not mapped") && $0.contains("VAE") }, "\(imported.notes)")
        #expect(imported.yaml.contains("type: load_vae") && imported.yaml.contains("type: empty_latent, vae: !ref vae.vae")
                && imported.yaml.contains("type: vae_decode, vae: !ref vae.vae"), "\(imported.yaml)")
        var outputs: [String: Image] = [:]
        for (name, vae) in [("own", ""), ("file", TinyModel.folder + "/vae")] {
            outputs[name] = try runImported(imported, ["checkpoint": TinyModel.folder, "vae": vae, "lora_detail_tweaker": Fixtures.path("lora/kohya.safetensors"),
                                                       "steps": "2", "width": "32", "height": "32"], output: name + ".png")
        }
        // The same weights as a separate file give the same pixels.
        #expect(try #require(outputs["own"]).pixels.maxAbsDifference(try #require(outputs["file"]).pixels) == 0)
    }
}
