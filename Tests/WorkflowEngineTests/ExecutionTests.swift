import Foundation
import ImageIO
import NodeKit
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// Running the bundled workflows on the tiny model: what is recomputed, what is cached, and
/// what a batch with a bad file or an interrupted run leaves behind.
@Suite(.serialized) struct ExecutionTests {
    let folder = TemporaryFolder()

    /// A 64x64 test photo (the tiny VAE downsamples by 4) and a mask with a square in the middle.
    func makeInputs() throws -> (photo: String, mask: String, photos: String) {
        var photo = Image(width: 64, height: 64, channels: 3)
        let p = photo.pixels.mutablePointer()
        for c in 0..<3 { for y in 0..<64 { for x in 0..<64 { p[(c * 64 + y) * 64 + x] = Float((x * (c + 1) + y * 3) % 64) / 63 } } }
        let photoPath = folder.file("photo.png")
        try ImageFile.write(photo, to: photoPath)
        var mask = Image(width: 64, height: 64, channels: 1)
        let m = mask.pixels.mutablePointer()
        for y in 20..<44 { for x in 20..<44 { m[y * 64 + x] = 1 } }
        let maskPath = folder.file("mask.png")
        try ImageFile.write(mask, to: maskPath)
        let photos = folder.file("photos")
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        for i in 0..<4 {
            var variant = photo
            let v = variant.pixels.mutablePointer()
            for j in 0..<(64 * 64) { v[j] = Swift.min(1, v[j] + Float(i) * 0.1) }
            try ImageFile.write(variant, to: photos + "/photo_\(i).png")
        }
        // A corrupt file among them.
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: photos + "/photo_9.png"))
        return (photoPath, maskPath, photos)
    }

    func run(_ workflow: String, _ overrides: [String: String], cache: ResultCache?,
             compute: ComputeSettings = .current) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: TestEngine.workflows + "/" + workflow),
                              registry: TestEngine.registry(), overrides: overrides, currentDirectory: folder.path)
        return Executor(graph: graph, options: Executor.Options(cache: cache, compute: compute)).run()
    }

    func tinyOverrides(_ extra: [String: String]) -> [String: String] {
        ["checkpoint": TinyModel.folder, "steps": "3"].merging(extra) { $1 }
    }

    /// upscale-photo.yaml: a photo upscaled 2x and refined with the UNet in tiles comes out at twice its size.
    @Test func upscalePhotoRefinesInTiles() throws {
        let (photo, _, _) = try makeInputs()
        let out = folder.file("out/upscaled.png")
        let report = try run("upscale-photo.yaml", tinyOverrides(["image": photo, "output": out, "tile": "12", "tile_overlap": "4", "steps": "10"]), cache: nil)
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        let image = try ImageFile.read(out)
        #expect(image.width == 128 && image.height == 128)
        // A phone JPEG (orientation 6, an ICC profile, EXIF): upright, and the JPEG written from it carries
        // the profile and the EXIF (orientation 1), through the VAE and the UNet, from save_image's source.
        let phone = try ImageFile.read(Fixtures.path("images/profile.jpg"))
        let jpeg = folder.file("out/phone.jpg")
        let fromPhone = try run("upscale-photo.yaml", tinyOverrides(["image": Fixtures.path("images/profile.jpg"), "output": jpeg, "tile": "12",
                                                                     "tile_overlap": "4", "steps": "4"]), cache: nil)
        #expect(fromPhone.succeeded, "\(fromPhone.nodes.flatMap(\.errors))")
        let written = try ImageFile.read(jpeg)
        #expect(written.height > written.width && !phone.embedded.isEmpty && written.embedded == phone.embedded)
        // A tile overlap as large as the tile is an error naming both.
        let bad = try run("upscale-photo.yaml", tinyOverrides(["image": photo, "output": folder.file("out/bad.png"), "tile": "8", "tile_overlap": "8", "steps": "10"]),
                          cache: nil)
        #expect(bad.nodes.first { $0.name == "refined" }?.errors.joined().contains("overlap 8 is not less than the tile size 8") == true)
        // batch-upscale.yaml: the same over a folder, one output per photo (the corrupt one fails alone).
        let (_, _, photos) = try makeInputs()
        let batch = try run("batch-upscale.yaml", tinyOverrides(["input": photos, "output": folder.file("up/{stem}.png"), "tile": "12",
                                                                 "tile_overlap": "4", "steps": "10"]), cache: nil)
        #expect(batch.items.map(\.status) == [.done, .done, .done, .done, .failed], "\(batch.items)")
        #expect(try ImageFile.read(folder.file("up/photo_3.png")).width == 128)
    }

    /// hires-fix-upscaler.yaml: the first pass decoded, upscaled by an upscaler model (the tiny 2x SRVGGNetCompact
    /// and the 4x RRDBNet in tiles, resized to the 2x asked for), encoded and denoised again. A changed upscaler
    /// file reruns the picture's upscale and what follows, not the first pass.
    @Test func hiresFixInImageSpaceWithAnUpscalerModel() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        let base = ["width": "32", "height": "24", "hires_steps": "3"]
        let compact = try run("hires-fix-upscaler.yaml", tinyOverrides(base.merging(["upscaler": Fixtures.path("upscalers/compact-x2.safetensors"),
                                                                                     "output": folder.file("out/compact.png")]) { $1 }), cache: cache)
        #expect(compact.succeeded, "\(compact.nodes.flatMap(\.errors))")
        let image = try ImageFile.read(folder.file("out/compact.png"))
        #expect(image.width == 64 && image.height == 48)
        let rrdb = try run("hires-fix-upscaler.yaml", tinyOverrides(base.merging(["upscaler": Fixtures.path("upscalers/esrgan-x4-new.pth"),
                                                                                  "output": folder.file("out/rrdb.png")]) { $1 }), cache: cache)
        #expect(rrdb.succeeded, "\(rrdb.nodes.flatMap(\.errors))")
        #expect(Set(rrdb.executedNodes).isSuperset(of: ["upscaler", "larger", "encoded", "second"]) && !rrdb.executedNodes.contains("first"),
                "\(rrdb.executedNodes)")
        #expect(try ImageFile.read(folder.file("out/rrdb.png")).width == 64)
        // Not an upscaler: an error naming the file, before anything is written.
        let wrong = try run("hires-fix-upscaler.yaml", tinyOverrides(base.merging(["upscaler": Fixtures.path("upscalers/unknown-arch.safetensors"),
                                                                                   "output": folder.file("out/wrong.png")]) { $1 }), cache: cache)
        #expect(!wrong.succeeded && wrong.nodes.flatMap(\.errors).joined().contains("unknown-arch.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: folder.file("out/wrong.png")))
    }

    /// hires-fix.yaml: the first pass's latent upscaled 2x and denoised again gives an image twice the size;
    /// the tiled VAE (forced on, tiles smaller than the image) decodes it to the same size, close to the untiled pass.
    @Test func hiresFixDoublesTheSizeAndTheTiledDecoderAgrees() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        let out = folder.file("out/hires.png")
        let report = try run("hires-fix.yaml", tinyOverrides(["width": "32", "height": "24", "hires_steps": "3", "output": out]), cache: cache)
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        let image = try ImageFile.read(out)
        #expect(image.width == 64 && image.height == 48)
        #expect(report.nodes.first { $0.name == "upscaled" }?.status == .ran)

        // The same latent decoded in 32-pixel tiles overlapping by 8 (the tiny VAE's cells are 4 pixels).
        let workflow = try Workflow.load(path: TestEngine.workflows + "/hires-fix.yaml")
        let tiledText = workflow.text.replacingOccurrences(of: "latent: !ref second}", with: "latent: !ref second, tiled: on, tile_size: 32, tile_overlap: 8}")
        #expect(tiledText != workflow.text)
        // ... and the second pass's UNet in tiles of 8 latent cells (16x12 latents: four tiles).
        let unetTiles = tiledText.replacingOccurrences(of: "    strength: !param hires_strength\n",
                                                       with: "    strength: !param hires_strength\n    tiled: on\n    tile_size: 8\n    tile_overlap: 2\n")
        #expect(unetTiles != tiledText)
        let tiledPath = TestEngine.workflows + "/hires-fix.yaml"  // relative paths resolve as the bundled file's
        let graph = try Graph(workflow: Workflow.parse(tiledText, path: tiledPath), registry: TestEngine.registry(),
                              overrides: tinyOverrides(["width": "32", "height": "24", "hires_steps": "3", "output": folder.file("out/tiled.png")]),
                              currentDirectory: folder.path)
        let tiled = Executor(graph: graph, options: Executor.Options(cache: cache)).run()
        #expect(tiled.succeeded, "\(tiled.nodes.flatMap(\.errors))")
        #expect(Set(tiled.executedNodes).subtracting(["model"]) == ["image", "save"], "only the decoder runs again: \(tiled.executedNodes)")
        let tiledImage = try ImageFile.read(folder.file("out/tiled.png"))
        #expect(tiledImage.width == 64 && tiledImage.height == 48)
        #expect(tiledImage.pixels.maxAbsDifference(image.pixels) > 0, "the tiles were not used")
        let unetGraph = try Graph(workflow: Workflow.parse(unetTiles, path: tiledPath), registry: TestEngine.registry(),
                                  overrides: tinyOverrides(["width": "32", "height": "24", "hires_steps": "3", "output": folder.file("out/unet-tiles.png")]),
                                  currentDirectory: folder.path)
        let unetTiled = Executor(graph: unetGraph, options: Executor.Options(cache: cache)).run()
        #expect(unetTiled.succeeded, "\(unetTiled.nodes.flatMap(\.errors))")
        #expect(Set(unetTiled.executedNodes).subtracting(["model"]) == ["second", "image", "save"], "\(unetTiled.executedNodes)")
        let unetImage = try ImageFile.read(folder.file("out/unet-tiles.png"))
        #expect(unetImage.width == 64 && unetImage.height == 48 && unetImage.pixels.maxAbsDifference(tiledImage.pixels) > 0)
        // A tile size that does not fit the VAE's cells is an error naming it.
        let bad = try Graph(workflow: Workflow.parse(tiledText.replacingOccurrences(of: "tile_size: 32", with: "tile_size: 66"), path: tiledPath),
                            registry: TestEngine.registry(), overrides: tinyOverrides(["width": "32", "height": "24", "hires_steps": "3",
                                                                                      "output": folder.file("out/bad.png")]),
                            currentDirectory: folder.path)
        let failed = Executor(graph: bad, options: Executor.Options(cache: cache)).run()
        #expect(failed.nodes.first { $0.name == "image" }?.errors.joined().contains("tile size 66 is not a multiple of 4") == true,
                "\(failed.nodes.flatMap(\.errors))")
        #expect(!FileManager.default.fileExists(atPath: folder.file("out/bad.png")))
    }

    @Test func inpaintRerunRecomputesOnlyWhatChanged() throws {
        let (photo, mask, _) = try makeInputs()
        let cache = try ResultCache(folder: folder.file("cache"))
        let base = tinyOverrides(["image": photo, "mask": mask, "output": folder.file("out/inpaint.png")])
        let cold = try run("inpaint.yaml", base, cache: cache)
        #expect(cold.succeeded, "\(cold.nodes.flatMap(\.errors))")
        let first = try ImageFile.read(folder.file("out/inpaint.png"))

        // Only cfg changes: denoise and what follows it run again; loads and encodes come from the cache.
        let warm = try run("inpaint.yaml", base.merging(["cfg": "5"]) { $1 }, cache: cache)
        #expect(warm.succeeded)
        let computed = Set(warm.executedNodes).subtracting(["model", "photo", "mask"])  // loaders read files every run
        #expect(computed == ["generated", "decoded", "blended", "save"], "recomputed: \(computed)")
        for name in ["positive", "negative", "encoded"] {
            #expect(warm.nodes.first { $0.name == name }?.status == .diskHit, "\(name) was not a cache hit")
        }

        // Back to the first settings: everything is cached and the output is identical to the cold run's.
        try FileManager.default.removeItem(atPath: folder.file("out/inpaint.png"))
        let again = try run("inpaint.yaml", base, cache: cache)
        #expect(Set(again.executedNodes).subtracting(["model", "photo", "mask"]) == ["save"])
        let second = try ImageFile.read(folder.file("out/inpaint.png"))
        #expect(second.pixels.maxAbsDifference(first.pixels) == 0)

        // Outside the mask (feathered by sigma 1, so 3 pixels wider) the output keeps the input's pixels exactly.
        let input = try ImageFile.read(photo)
        let (o, i) = (second.pixels.pointer, input.pixels.pointer)
        var changed = 0
        for c in 0..<3 { for y in 0..<64 { for x in 0..<64 where x < 17 || x > 46 || y < 17 || y > 46 {
            if o[(c * 64 + y) * 64 + x] != i[(c * 64 + y) * 64 + x] { changed += 1 }
        } } }
        #expect(changed == 0)
    }

    @Test func anotherWorkflowSharingNodesHitsTheCache() throws {
        let (photo, mask, _) = try makeInputs()
        let cache = try ResultCache(folder: folder.file("cache"))
        _ = try run("inpaint.yaml", tinyOverrides(["image": photo, "mask": mask, "output": folder.file("out/a.png"),
                                                    "prompt": "a blue square on a white background"]), cache: cache)
        // img2img shares the checkpoint, the image's encoding and the prompt's encoding.
        let report = try run("img2img.yaml", tinyOverrides(["image": photo, "output": folder.file("out/b.png"),
                                                            "prompt": "a blue square on a white background"]), cache: cache)
        #expect(report.succeeded)
        #expect(report.nodes.first { $0.name == "encoded" }?.status == .diskHit)
        #expect(report.nodes.first { $0.name == "positive" }?.status == .diskHit)
        #expect(report.nodes.first { $0.name == "generated" }?.status == .ran)
    }

    /// The settings that change results (here the fast mode's convolutions) are part of the keys: a
    /// run with them computes its own results instead of taking the exact mode's, in the same process.
    @Test func computeSettingsThatChangeResultsHaveTheirOwnCacheKeys() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        let overrides = tinyOverrides(["output": folder.file("out/exact.png"), "width": "32", "height": "32", "steps": "1"])
        #expect(try run("txt2img.yaml", overrides, cache: cache).succeeded)
        var fast = ComputeSettings.current
        fast.useFastMode()
        fast.threads = 1
        let report = try run("txt2img.yaml", overrides.merging(["output": folder.file("out/fast.png")]) { $1 }, cache: cache, compute: fast)
        #expect(report.succeeded)
        #expect(report.nodes.first { $0.name == "generated" }?.status == .ran, "the fast mode was served the exact mode's result")
        let again = try run("txt2img.yaml", overrides.merging(["output": folder.file("out/exact2.png")]) { $1 }, cache: cache)
        #expect(again.nodes.first { $0.name == "generated" }?.status == .diskHit)
    }

    @Test func seedsAbove2To53HaveTheirOwnCacheKeys() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        let seed = 1 << 60  // seed + 1 is the same Double
        var first = tinyOverrides(["seed": String(seed), "output": folder.file("out/a.png"), "width": "32", "height": "32"])
        first["steps"] = "1"
        #expect(try run("txt2img.yaml", first, cache: cache).succeeded)
        let second = first.merging(["seed": String(seed + 1), "output": folder.file("out/b.png")]) { $1 }
        let report = try run("txt2img.yaml", second, cache: cache)
        #expect(report.nodes.first { $0.name == "generated" }?.status == .ran, "seed + 1 was served seed's cached result")
    }

    @Test func batchWithACorruptFile() throws {
        let (_, _, photos) = try makeInputs()
        let cache = try ResultCache(folder: folder.file("cache"))
        let out = folder.file("batch")
        let overrides = tinyOverrides(["input": photos, "output": out + "/{stem}.png", "strength": "0.5"])
        let report = try run("batch-img2img.yaml", overrides, cache: cache)
        #expect(!report.succeeded)  // a non-zero exit
        let written = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(written == ["photo_0.png", "photo_1.png", "photo_2.png", "photo_3.png"])
        #expect(report.nodes.first { $0.name == "photos" }?.errors.first?.contains("photo_9.png") == true)

        // A second run resumes: every item comes from the cache and the files are up to date.
        let again = try run("batch-img2img.yaml", overrides, cache: cache)
        #expect(again.nodes.first { $0.name == "generated" }?.computed == 0)
    }

    @Test func resizeFolderNeedsNoModel() throws {
        let (_, _, photos) = try makeInputs()
        try FileManager.default.removeItem(atPath: photos + "/photo_9.png")
        let report = try run("resize-folder.yaml", ["input": photos, "output": folder.file("small/{stem}.png"), "width": "32", "height": "16"],
                             cache: nil)
        #expect(report.succeeded)
        let image = try ImageFile.read(folder.file("small/photo_2.png"))
        #expect(image.width == 16 && image.height == 16)
        #expect(image.metadata["sdflow:workflow"]?.contains("resize_image") == true)
    }

    @Test func everyBundledWorkflowRunsOnTheTinyModel() throws {
        let (photo, mask, photos) = try makeInputs()
        try FileManager.default.removeItem(atPath: photos + "/photo_9.png")
        let cases: [(String, [String: String])] = [
            ("txt2img.yaml", ["output": folder.file("w/t.png")]),
            ("txt2img-fast.yaml", ["output": folder.file("w/f.png")]),
            ("img2img.yaml", ["image": photo, "output": folder.file("w/i.png")]),
            ("inpaint.yaml", ["image": photo, "mask": mask, "output": folder.file("w/p.png")]),
            ("img2img-chain.yaml", ["image": photo, "output": folder.file("w/c.png")]),
            ("batch-img2img.yaml", ["input": photos, "output": folder.file("w/batch/{stem}.png")]),
        ]
        for (workflow, extra) in cases {
            let report = try run(workflow, tinyOverrides(extra), cache: nil)
            #expect(report.succeeded, "\(workflow): \(report.nodes.flatMap(\.errors))")
        }
        let txt = try ImageFile.read(folder.file("w/t.png"))
        #expect(txt.width == 64 && txt.metadata["parameters"]?.contains("Seed: 42") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.file("w/batch")).count == 4)
    }

    @Test func corruptCacheEntryIsRecomputed() throws {
        let (photo, _, _) = try makeInputs()
        let cache = try ResultCache(folder: folder.file("cache"))
        let overrides = tinyOverrides(["image": photo, "output": folder.file("out/x.png")])
        _ = try run("img2img.yaml", overrides, cache: cache)
        // Damage every entry: flip bytes in the middle of each file.
        for entry in cache.entries() {
            let path = folder.file("cache/v1/\(entry.key.prefix(2))/\(entry.key).safetensors")
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            if data.count > 200 { for i in stride(from: data.count / 2, to: data.count / 2 + 16, by: 1) { data[i] ^= 0xFF } }
            else { data = data.prefix(data.count / 2) }
            try data.write(to: URL(fileURLWithPath: path))
        }
        let report = try run("img2img.yaml", overrides, cache: cache)
        #expect(report.succeeded)
        #expect(!report.warnings.filter { $0.contains("damaged") }.isEmpty)
        #expect(report.nodes.first { $0.name == "generated" }?.status == .ran)
    }
}

extension ExecutionTests {
    /// Runs the PNG `output` again as `sdflow run` does (its recorded parameters, output
    /// redirected to `again`) from `directory`, and expects the same pixels.
    func expectRerunGivesTheSameImage(_ output: String, again: String, from directory: String) throws {
        let workflow = try Workflow.load(path: output)
        var parameters = workflow.recordedParameters
        parameters["output"] = again
        let graph = try Graph(workflow: workflow, registry: TestEngine.registry(), overrides: parameters, currentDirectory: directory)
        #expect(Executor(graph: graph, options: .init()).run().succeeded)
        let a = try ImageFile.read(output), b = try ImageFile.read(again)
        #expect(a.pixels.maxAbsDifference(b.pixels) == 0)
    }

    @Test func rerunFromAWrittenPNG() throws {
        let (photo, _, _) = try makeInputs()
        let output = folder.file("first/img.png")
        let first = try run("img2img.yaml", tinyOverrides(["image": photo, "output": output, "seed": "7"]), cache: nil)
        #expect(first.succeeded)
        // The PNG carries the workflow, its path and the parameters: running it gives the same image.
        let workflow = try Workflow.load(path: output)
        #expect(workflow.path.hasSuffix("workflows/img2img.yaml"))
        #expect(workflow.recordedParameters["seed"] == "7")
        try expectRerunGivesTheSameImage(output, again: folder.file("second/img.png"), from: folder.path)
        #expect(try ImageFile.read(output).metadata["parameters"]?.contains("Seed: 7") == true)
    }

    @Test func nanWeightsAreAnErrorNamingTheModelPartAndStep() throws {
        for (component, node, says) in [("unet", "generated", "UNet's noise prediction has NaN or infinite values at step 1"),
                                         ("vae", "image", "VAE decoder's image has NaN or infinite values")] {
            let model = folder.file("nan-\(component)")
            try TinyModel.copyFolder(to: model, edit: { part, tensors in
                guard part == component else { return }
                // Every weight of the part's last layers: the output is then NaN wherever the input was.
                for key in tensors.keys.sorted().suffix(4) { tensors[key] = tensors[key]!.map { _ in .nan } }
            })
            let report = try run("txt2img.yaml", tinyOverrides(["checkpoint": model, "output": folder.file("out/nan-\(component).png"),
                                                                "width": "32", "height": "32", "steps": "2"]), cache: nil)
            #expect(!report.succeeded)
            let failed = report.nodes.first { $0.name == node }
            #expect(failed?.status == .failed && failed?.errors.first?.contains(says) == true, "\(report.nodes.map { ($0.name, $0.status, $0.errors) })")
            #expect(!FileManager.default.fileExists(atPath: folder.file("out/nan-\(component).png")))
        }
    }

    @Test func rerunFromAPNGWithADamagedRecordIsRefused() throws {
        let output = folder.file("out/r.png")
        #expect(try run("txt2img.yaml", tinyOverrides(["output": output, "width": "32", "height": "32", "steps": "1"]), cache: nil).succeeded)
        let image = try ImageFile.read(output)
        let workflowText = try #require(image.metadata[ImageMetadataKey.workflow])
        let parameters = try #require(image.metadata[ImageMetadataKey.parameters])
        func message(_ text: [(key: String, value: String)], _ name: String) throws -> String {
            let path = folder.file(name)
            try ImageFile.write(image, to: path, text: text)
            do { _ = try Workflow.load(path: path); return "loaded" } catch { return "\(error)" }
        }
        // Without its parameters (or with damaged ones) the rerun would quietly use the defaults: another image.
        let missing = try message([(ImageMetadataKey.workflow, workflowText)], "no-parameters.png")
        #expect(missing.contains("no-parameters.png") && missing.contains("no sdflow:parameters chunk"), "\(missing)")
        let bogus = try message([(ImageMetadataKey.workflow, workflowText), (ImageMetadataKey.parameters, "{not json")], "bogus.png")
        #expect(bogus.contains("bogus.png") && bogus.contains("sdflow:parameters chunk is not what sdflow writes"), "\(bogus)")
        // A damaged workflow chunk is reported at the image, not at the workflow file it was once read from.
        let badWorkflow = try message([(ImageMetadataKey.workflow, "version: [1"), (ImageMetadataKey.parameters, parameters)], "bad-workflow.png")
        #expect(badWorkflow.contains("bad-workflow.png") && badWorkflow.contains("sdflow:workflow chunk"), "\(badWorkflow)")
        #expect(!badWorkflow.contains("txt2img.yaml"), "\(badWorkflow)")
    }

    @Test func rerunFromAPNGReplaysTheDrawnSeed() throws {
        // `seed: random` draws a seed; running the PNG again must use that seed, not draw another.
        let output = folder.file("random/img.png")
        let first = try run("img2img.yaml", tinyOverrides(["output": output, "seed": "random"]), cache: nil)
        #expect(first.succeeded)
        let drawn = try #require(first.seeds.values.first)
        #expect(try Workflow.load(path: output).recordedParameters["seed"] == String(drawn))
        try expectRerunGivesTheSameImage(output, again: folder.file("random/again.png"), from: folder.path)
    }

    @Test func rerunFromAPNGReplaysASeedDrawnInANode() throws {
        // `seed: random` written in the node itself, not through a workflow parameter.
        let (photo, _, _) = try makeInputs()
        let text = try String(contentsOfFile: TestEngine.workflows + "/img2img.yaml", encoding: .utf8)
            .replacingOccurrences(of: "seed: !param seed", with: "seed: random")
        let path = folder.file("literal/img2img.yaml")
        try FileManager.default.createDirectory(atPath: folder.file("literal"), withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let output = folder.file("literal/img.png")
        let graph = try Graph(workflow: try Workflow.load(path: path), registry: TestEngine.registry(),
                              overrides: tinyOverrides(["image": photo, "output": output]), currentDirectory: folder.path)
        let first = Executor(graph: graph, options: .init()).run()
        #expect(first.succeeded)
        let drawn = try #require(first.seeds["generated"])
        let generated = try #require(try Workflow.load(path: output).nodes.first { $0.name == "generated" })
        #expect(generated.fields.contains { field in
            if case .literal(.integer(drawn)) = field.value { return field.name == "seed" }
            return false
        })
        try expectRerunGivesTheSameImage(output, again: folder.file("literal/again.png"), from: folder.path)
    }

    @Test func rerunFromAPNGFindsRelativePathsGivenWithSet() throws {
        // --set image=photo.png in one folder; the PNG is run again from another folder.
        let (photo, _, _) = try makeInputs()
        let output = folder.file("set/img.png")
        let here = URL(fileURLWithPath: photo).deletingLastPathComponent().path
        let overrides = tinyOverrides(["image": URL(fileURLWithPath: photo).lastPathComponent, "output": "set/img.png"])
        let graph = try Graph(workflow: try Workflow.load(path: TestEngine.workflows + "/img2img.yaml"),
                              registry: TestEngine.registry(), overrides: overrides, currentDirectory: here)
        #expect(Executor(graph: graph, options: .init()).run().succeeded)
        #expect(try Workflow.load(path: output).recordedParameters["image"] == URL(fileURLWithPath: photo).standardizedFileURL.path)
        try expectRerunGivesTheSameImage(output, again: folder.file("set/again.png"), from: "/")
    }

    @Test func changedRerunDoesNotReplaceTheSourceImage() throws {
        // The recorded output is the PNG itself: running it again unchanged leaves it alone; with a
        // changed parameter the run fails rather than overwrite the image it was read from.
        let output = folder.file("source/img.png")
        #expect(try run("img2img.yaml", tinyOverrides(["output": output]), cache: nil).succeeded)
        let before = try Data(contentsOf: URL(fileURLWithPath: output))
        let workflow = try Workflow.load(path: output)
        for (changes, succeeds) in [([String: String](), true), (["strength": "0.5"], false)] {
            let parameters = workflow.recordedParameters.merging(changes) { $1 }
            let graph = try Graph(workflow: workflow, registry: TestEngine.registry(), overrides: parameters, currentDirectory: folder.path)
            let report = Executor(graph: graph, options: .init()).run()
            #expect(report.succeeded == succeeds)
            if !succeeds {
                let message = report.nodes.first { $0.name == "save" }?.errors.joined() ?? ""
                #expect(message.contains("the image this workflow was read from"), "\(message)")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == before)
        }
    }

    @Test func rerunFromAPNGKeepsDefaultPathsRelativeToTheWorkflow() throws {
        // img2img.yaml's default image, ../examples/photo.png, is relative to the workflow's folder.
        let output = folder.file("relative/img.png")
        #expect(try run("img2img.yaml", tinyOverrides(["output": output]), cache: nil).succeeded)
        let workflow = try Workflow.load(path: output)
        #expect(workflow.recordedParameters["image"] == nil)
        #expect(workflow.recordedParameters["steps"] == "3")
        // Run from another folder than the workflow's: the default still finds the photo.
        try expectRerunGivesTheSameImage(output, again: folder.file("relative/again.png"), from: folder.path)
    }
}
