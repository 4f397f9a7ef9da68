import Foundation
import ImageIO
import TestSupport
import Testing
import WorkflowEngine

/// ComfyUI workflows exported for API (Tests/Fixtures/comfy): converted node by node, run on the
/// tiny model, and the ways such a file can be wrong, each an error naming the node.
@Suite struct ComfyImportTests {
    let folder = TemporaryFolder()

    func fixture(_ name: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("comfy/" + name))) }

    func run(_ path: String, _ overrides: [String: String]) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: path), registry: TestEngine.registry(), overrides: overrides,
                              currentDirectory: folder.path)
        return Executor(graph: graph, options: .init()).run()
    }

    /// ComfyUI's default graph gives the image of the bundled txt2img workflow with the same settings.
    @Test func theDefaultGraphRunsAsTheEquivalentWorkflow() throws {
        let comfy = try run(Fixtures.path("comfy/txt2img_api.json"),
                            ["ckpt_4": TinyModel.folder, "output_9": folder.file("comfy.png")])
        #expect(comfy.succeeded, "\(comfy.nodes.flatMap(\.errors))")
        let native = try run(TestEngine.workflows + "/txt2img.yaml",
                             ["checkpoint": TinyModel.folder, "sampler": "euler", "steps": "3", "cfg": "3", "seed": "42",
                              "output": folder.file("native.png")])
        #expect(native.succeeded)
        let (a, b) = (try ImageFile.read(folder.file("comfy.png")), try ImageFile.read(folder.file("native.png")))
        #expect(a.width == 64 && a.pixels.maxAbsDifference(b.pixels) == 0)
    }

    /// Every class of the second fixture maps onto the sdflow node it should, with ComfyUI's values.
    @Test func classesMapOntoSdflowNodes() throws {
        let imported = try ComfyImport(json: try fixture("img2img_api.json"), source: "img2img_api.json")
        let yaml = imported.yaml
        for line in ["n1: {type: load_checkpoint, path: !param ckpt_1}",
                     "n2: {type: load_lora, clip: !ref n1.clip, path: !param lora_2, strength_clip: 0.5, strength_model: 0.8, unet: !ref n1.unet}",
                     "n4: {type: clip_encode, clip: !ref n2.clip, clip_skip: 2, text: \"a blue square, (sharp:1.2)\", weighting: comfy}",
                     "n6: {type: load_image, path: !param image_6}",
                     "n6_mask: {type: load_mask, channel: alpha, invert: true, path: !param image_6}",
                     "n7: {type: resize_image, filter: lanczos, height: 64, image: !ref n6.image, mode: fill, width: 64}",
                     "n8: {type: vae_encode, image: !ref n7.image, vae: !ref n1.vae}",
                     "n12: {type: save_image, image: !ref n11.image, path: !param output_12}"] {
            #expect(yaml.contains("  " + line), "missing: \(line)\n\(yaml)")
        }
        // KSamplerAdvanced from step 10 of 30: strength 2/3 (a hair over, so that 20 steps run), the mask of the latent.
        let denoise = try #require(yaml.split(separator: "\n").first { $0.hasPrefix("  n10:") })
        for field in ["type: denoise", "sampler: dpmpp_2m", "schedule: karras", "steps: 30", "cfg: 5.5", "seed: 7", "mask: !ref n6_mask.mask",
                      "strength: 0.66666666766", "latent: !ref n8.latent", "unet: !ref n2.unet"] {
            #expect(denoise.contains(field), "\(field) not in \(denoise)")
        }
        #expect(imported.notes.contains { $0.contains("--set ckpt_1=PATH") } && imported.notes.contains { $0.contains("--set lora_2=PATH") })
        // And it is a valid sdflow workflow.
        _ = try Workflow.parse(yaml, path: folder.file("imported.yaml"))
    }

    /// An image-to-image graph with a noise mask from the image's alpha runs on the tiny model.
    @Test func anImageToImageGraphRuns() throws {
        var photo = Image(width: 64, height: 64, channels: 4)
        let p = photo.pixels.mutablePointer()
        for i in 0..<(4 * 64 * 64) { p[i] = i >= 3 * 64 * 64 ? (i % 64 < 32 ? 0 : 1) : Float(i % 7) / 7 }
        try ImageFile.write(photo, to: folder.file("photo.png"))
        var object = try JSONSerialization.jsonObject(with: try fixture("img2img_api.json")) as! [String: Any]
        var nodes = object["prompt"] as! [String: Any]
        nodes.removeValue(forKey: "2")  // no LoRA file here: the checkpoint's UNet and CLIP directly
        nodes["3"] = ["class_type": "CLIPSetLastLayer", "inputs": ["clip": ["1", 1], "stop_at_clip_layer": -1]]
        var sampler = nodes["10"] as! [String: Any], inputs = sampler["inputs"] as! [String: Any]
        inputs["model"] = ["1", 0]
        inputs["steps"] = 6
        inputs["start_at_step"] = 3
        sampler["inputs"] = inputs
        nodes["10"] = sampler
        object["prompt"] = nodes
        let path = folder.file("img2img_api.json")
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        let report = try run(path, ["ckpt_1": TinyModel.folder, "image_6": folder.file("photo.png"), "output_12": folder.file("out.png")])
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        #expect(try ImageFile.read(folder.file("out.png")).width == 64)
    }

    /// sdflow's own node types mix with ComfyUI's classes by name: links to their ports, literals to
    /// their parameters; with a server's file lookup, a node that writes files of its choosing is refused.
    @Test func sdflowNodesMixWithComfyUIClasses() throws {
        var graph = try JSONSerialization.jsonObject(with: try fixture("txt2img_api.json")) as! [String: Any]
        graph["10"] = ["class_type": "resize_image", "inputs": ["image": ["8", 0], "width": 32, "height": 24, "filter": "bicubic"]]
        graph["9"] = ["class_type": "SaveImage", "inputs": ["images": ["10", 0], "filename_prefix": "mixed"]]
        let path = folder.file("mixed_api.json")
        try JSONSerialization.data(withJSONObject: graph).write(to: URL(fileURLWithPath: path))
        let registry = try TestEngine.registry()
        let imported = try ComfyImport(json: try Data(contentsOf: URL(fileURLWithPath: path)), source: "mixed", registry: registry)
        #expect(imported.yaml.contains("  n10: {type: resize_image, filter: \"bicubic\", height: 24, image: !ref n8.image, width: 32}"), "\(imported.yaml)")
        let graphWithOverrides = try Graph(workflow: Workflow.parse(imported.yaml, path: path), registry: registry,
                                           overrides: ["ckpt_4": TinyModel.folder, "output_9": folder.file("mixed.png")])
        #expect(Executor(graph: graphWithOverrides, options: .init()).run().succeeded)
        let image = try ImageFile.read(folder.file("mixed.png"))
        #expect(image.width == 32 && image.height == 24)

        graph["11"] = ["class_type": "save_image", "inputs": ["image": ["8", 0], "path": "/tmp/anywhere.png"]]
        let served = try JSONSerialization.data(withJSONObject: graph)
        do {
            _ = try ComfyImport(json: served, source: "served", files: { _, name in name }, registry: registry)
            Issue.record("a server accepted save_image's own path")
        } catch {
            #expect("\(error)" == "node 11 (save_image): writes files of its own choosing ('path'); use SaveImage")
        }
        graph["11"] = ["class_type": "resize_image", "inputs": ["image": ["8", 0], "size": 3]]
        do {
            _ = try ComfyImport(json: try JSONSerialization.data(withJSONObject: graph), source: "bad", registry: registry)
            Issue.record("an unknown input was accepted")
        } catch {
            #expect("\(error)" == "node 11 (resize_image): 'size' is neither an input nor a parameter of resize_image")
        }
    }

    /// Upscaler models and tiled VAE passes map onto sdflow's upscaler nodes and VAE tiling.
    @Test func upscalersAndTiledVAEPassesMap() throws {
        let json = #"""
            {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
             "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "3": {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["2", 0], "vae": ["1", 2], "tile_size": 300, "overlap": 70}},
             "4": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
             "5": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["4", 0], "image": ["3", 0]}},
             "6": {"class_type": "VAEEncodeTiled", "inputs": {"pixels": ["5", 0], "vae": ["1", 2], "tile_size": 512, "overlap": 64}},
             "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
             "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "up"}}}
            """#
        let yaml = try ComfyImport(json: Data(json.utf8), source: "up").yaml
        for line in ["n3: {type: vae_decode, latent: !ref n2.latent, tile_overlap: 64, tile_size: 296, tiled: on, vae: !ref n1.vae}",
                     "n4: {type: load_upscaler, path: !param upscaler_4}",
                     "n5: {type: upscale_image, image: !ref n3.image, upscaler: !ref n4.upscaler}",
                     "n6: {type: vae_encode, image: !ref n5.image, tile_overlap: 64, tile_size: 512, tiled: on, vae: !ref n1.vae}"] {
            #expect(yaml.contains("  " + line), "missing: \(line)\n\(yaml)")
        }
        _ = try Workflow.parse(yaml, path: folder.file("up.yaml"))
    }

    /// Two chained ControlNetApplyAdvanced nodes become chained apply_controlnet nodes feeding the
    /// sampler's control; the graph runs on the tiny model with the tiny ControlNets.
    @Test func controlNetsMap() throws {
        var photo = Image(width: 64, height: 64, channels: 3)
        for i in 0..<photo.pixels.count where i % 7 == 0 { photo.pixels.mutablePointer()[i] = 1 }
        try ImageFile.write(photo, to: folder.file("edges.png"))
        let json = #"""
            {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny"}},
             "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house", "clip": ["4", 1]}},
             "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
             "10": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "tiny-a"}},
             "11": {"class_type": "LoadImage", "inputs": {"image": "edges.png"}},
             "12": {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": ["6", 0], "negative": ["7", 0], "control_net": ["10", 0],
                    "image": ["11", 0], "strength": 0.8, "start_percent": 0, "end_percent": 0.5}},
             "13": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "tiny-b"}},
             "14": {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": ["12", 0], "negative": ["12", 1], "control_net": ["13", 0],
                    "image": ["11", 0], "strength": 0.5, "start_percent": 0, "end_percent": 1}},
             "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 4, "cfg": 5, "sampler_name": "euler", "scheduler": "normal",
                   "denoise": 1, "model": ["4", 0], "positive": ["14", 0], "negative": ["14", 1], "latent_image": ["5", 0]}},
             "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "cn"}}}
            """#
        let input = folder.path
        let files: ComfyImport.FileLookup = { kind, name in
            switch kind {
            case "checkpoints": return TinyModel.folder
            case "controlnet": return Fixtures.path("controlnet/" + name)
            default: return input + "/" + name
            }
        }
        let imported = try ComfyImport(json: Data(json.utf8), source: "cn.json", files: files)
        let yaml = imported.yaml
        for line in ["n10: {type: load_controlnet, path: !param controlnet_10}",
                     "n12: {type: apply_controlnet, controlnet: !ref n10.controlnet, end_percent: 0.5, image: !ref n11.image, resize_mode: crop_and_resize, start_percent: 0, strength: 0.8}",
                     "n14: {type: apply_controlnet, control: !ref n12.control, controlnet: !ref n13.controlnet, end_percent: 1, image: !ref n11.image, resize_mode: crop_and_resize, start_percent: 0, strength: 0.5}"] {
            #expect(yaml.contains("  " + line), "missing: \(line)\n\(yaml)")
        }
        let denoise = try #require(yaml.split(separator: "\n").first { $0.hasPrefix("  n3:") })
        #expect(denoise.contains("control: !ref n14.control") && denoise.contains("positive: !ref n6.conditioning"), "\(denoise)")
        try yaml.write(toFile: folder.file("cn.yaml"), atomically: true, encoding: .utf8)
        let report = try run(folder.file("cn.yaml"), ["output_9": folder.file("cn.png")])
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        #expect(try ImageFile.read(folder.file("cn.png")).width == 64)
    }

    /// ComfyUI's CLIPTextEncodeSDXL: clip_encode of text_g and sdxl_time_ids of its sizes, which the
    /// sampler takes as time_ids; the graph runs on the tiny SDXL.
    @Test func sdxlTextEncodeMaps() throws {
        let json = #"""
            {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl"}},
             "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "6": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"clip": ["4", 1], "width": 2048, "height": 1536, "crop_w": 8, "crop_h": 4,
                   "target_width": 1024, "target_height": 768, "text_g": "a fox", "text_l": "a fox"}},
             "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
             "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 5, "sampler_name": "euler", "scheduler": "normal",
                   "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
             "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "xl"}}}
            """#
        let imported = try ComfyImport(json: Data(json.utf8), source: "xl.json", files: { _, _ in Fixtures.path("tiny-sdxl") })
        let yaml = imported.yaml
        for line in ["n6: {type: clip_encode, clip: !ref n4.clip, text: \"a fox\", weighting: comfy}",
                     "n6_sizes: {type: sdxl_time_ids, crop_left: 8, crop_top: 4, height: 1536, target_height: 768, target_width: 1024, width: 2048}"] {
            #expect(yaml.contains("  " + line), "missing: \(line)\n\(yaml)")
        }
        let denoise = try #require(yaml.split(separator: "\n").first { $0.hasPrefix("  n3:") })
        #expect(denoise.contains("time_ids: !ref n6_sizes.time_ids"), "\(denoise)")
        try yaml.write(toFile: folder.file("xl.yaml"), atomically: true, encoding: .utf8)
        let report = try run(folder.file("xl.yaml"), ["output_9": folder.file("xl.png")])
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
    }

    @Test func wrongFilesAreErrorsNamingTheNode() throws {
        func error(_ json: String) -> String {
            do {
                _ = try ComfyImport(json: Data(json.utf8), source: "w.json")
                return "no error"
            } catch { return "\(error)" }
        }
        let loader = #""1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}}"#
        #expect(error(#"{"nodes": [], "links": [], "version": 0.4}"#).contains("UI format"))
        #expect(error(#"{\#(loader), "2": {"class_type": "ConditioningCombine", "inputs": {}}}"#)
            .hasPrefix("node 2 (ConditioningCombine): has no sdflow equivalent"))
        #expect(error(#"{"2": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}}}"#)
            == "node 2 (VAEDecode): links to node 9, which the workflow does not have")
        #expect(error(#"{\#(loader), "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 7], "vae": ["1", 2]}}}"#)
            == "node 2 (VAEDecode): input 'samples' links to output 7 of node 1, which has 3")
        #expect(error(#"{\#(loader), "2": {"class_type": "EmptyLatentImage", "inputs": {"width": "wide", "height": 64}}}"#)
            == "node 2 (EmptyLatentImage): input 'width' is not a number")
        #expect(error(#"{\#(loader), "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x"}}}"#)
            == "node 2 (CLIPTextEncode): input 'clip' is missing")
        let ksampler = #""2": {"class_type": "KSampler", "inputs": {"sampler_name": "heunpp2", "scheduler": "normal"}}"#
        #expect(error(#"{\#(loader), \#(ksampler)}"#).hasPrefix("node 2 (KSampler): sampler_name 'heunpp2' is not available in sdflow"))
        #expect(error("[1, 2]").contains("not a JSON object"))
        #expect(!ComfyImport.recognises(Data("version: 1\nnodes: {}\n".utf8)))
        #expect(!ComfyImport.recognises(Data(#"{"version": 1, "nodes": {}}"#.utf8)))
    }
}
