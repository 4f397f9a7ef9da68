import Foundation
import NodeKit
import WorkflowEngine

/// `GET /object_info`: the ComfyUI classes sdflow runs (`ComfyImport.supportedClasses`), in ComfyUI's
/// format, with the model and image lists of the server's folders as their choices; and sdflow's own
/// node types (plugins included) under their names, in the category "sdflow/PACK".
enum ObjectInfo {
    /// One input: a type ("INT", "MODEL") or a list of choices, and its options.
    private static func input(_ type: Any, _ options: [String: Any] = [:]) -> [Any] { options.isEmpty ? [type] : [type, options] }

    private static func int(_ value: Int, _ min: Int, _ max: Int) -> [Any] { input("INT", ["default": value, "min": min, "max": max]) }
    private static func float(_ value: Double, _ min: Double, _ max: Double, step: Double = 0.01) -> [Any] {
        input("FLOAT", ["default": value, "min": min, "max": max, "step": step])
    }

    /// A class entry.
    private static func node(_ name: String, _ category: String, required: [(String, [Any])], outputs: [(String, String)] = [],
                             output: Bool = false) -> [String: Any] {
        ["input": ["required": Dictionary(required.map { ($0.0, $0.1 as Any) }, uniquingKeysWith: { a, _ in a })],
         "input_order": ["required": required.map(\.0)],
         "output": outputs.map(\.0), "output_is_list": outputs.map { _ in false }, "output_name": outputs.map(\.1),
         "name": name, "display_name": name, "description": "", "python_module": "sdflow", "category": category,
         "output_node": output]
    }

    /// ComfyUI's name of a value type ("IMAGE", "MODEL" for a UNet).
    static func typeName(_ type: ValueType) -> String {
        switch type {
        case .unet: "MODEL"
        case .upscaler: "UPSCALE_MODEL"
        case .controlnet: "CONTROL_NET"
        case .list(let element): typeName(element)
        default: type.description.uppercased()
        }
    }

    /// An sdflow node type as a ComfyUI class; nil for nodes that write files of their own choosing
    /// (the server refuses them: outputs go through SaveImage).
    static func native(_ d: NodeDescription, pack: String, _ folders: Folders) -> [String: Any]? {
        guard !d.parameters.contains(where: { if case .outputPath = $0.kind { return true }; return false }) else { return nil }
        var required: [(String, [Any])] = [], optional: [(String, [Any])] = []
        for port in d.inputs {
            if port.optional { optional.append((port.name, input(typeName(port.type)))) } else { required.append((port.name, input(typeName(port.type)))) }
        }
        for p in d.parameters {
            var options: [String: Any] = ["tooltip": p.help]
            if let value = p.defaultValue {
                switch value {
                case .integer(let i): options["default"] = i
                case .number(let x): options["default"] = x
                case .text(let t): options["default"] = t
                case .boolean(let b): options["default"] = b
                }
            }
            let spec: [Any]
            switch p.kind {
            case .integer(let range):
                if let range { (options["min"], options["max"]) = (range.lowerBound, range.upperBound) }
                spec = input("INT", options)
            case .seed:
                (options["min"], options["max"]) = (0, Int(Int64.max))
                spec = input("INT", options)
            case .number(let range):
                if let range { (options["min"], options["max"]) = (range.lowerBound, range.upperBound) }
                options["step"] = 0.01
                spec = input("FLOAT", options)
            case .boolean: spec = input("BOOLEAN", options)
            case .choice(let words): spec = input(words, options)
            case .inputPath:
                let files = folders.files(ComfyImportFolders.folder(of: d.name))
                spec = files.isEmpty ? input("STRING", options) : input(files, options)
            case .text, .outputPath: spec = input("STRING", options)
            }
            if p.defaultValue == nil { required.append((p.name, spec)) } else { optional.append((p.name, spec)) }
        }
        var entry = node(d.name, "sdflow/\(pack)", required: required, outputs: d.outputs.map { (typeName($0.type), $0.name) }, output: d.isOutput)
        entry["description"] = d.summary
        entry["input"] = ["required": Dictionary(required.map { ($0.0, $0.1 as Any) }, uniquingKeysWith: { a, _ in a }),
                          "optional": Dictionary(optional.map { ($0.0, $0.1 as Any) }, uniquingKeysWith: { a, _ in a })]
        entry["input_order"] = ["required": required.map(\.0), "optional": optional.map(\.0)]
        return entry
    }

    static func all(_ folders: Folders, registry: NodeRegistry) -> [String: Any] {
        var result = comfy(folders)
        for pack in registry.packs {
            for node in pack.nodes where result[node.description.name] == nil {
                if let entry = native(node.description, pack: pack.name, folders) { result[node.description.name] = entry }
            }
        }
        return result
    }

    /// The ComfyUI classes.
    static func comfy(_ folders: Folders) -> [String: Any] {
        let samplers = ComfyImport.samplers.keys.sorted(), schedulers = ComfyImport.schedulers.keys.sorted()
        let images = folders.files("input").filter { name in [".png", ".jpg", ".jpeg"].contains { name.lowercased().hasSuffix($0) } }
        let sampling: [(String, [Any])] = [
            ("model", input("MODEL")), ("seed", int(0, 0, Int(Int64.max))), ("steps", int(20, 1, 10000)), ("cfg", float(8, 0, 100, step: 0.1)),
            ("sampler_name", input(samplers)), ("scheduler", input(schedulers)), ("positive", input("CONDITIONING")),
            ("negative", input("CONDITIONING")), ("latent_image", input("LATENT")),
        ]
        let entries: [[String: Any]] = [
            node("CheckpointLoaderSimple", "loaders", required: [("ckpt_name", input(folders.files("checkpoints")))],
                 outputs: [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
            node("CLIPSetLastLayer", "conditioning", required: [("clip", input("CLIP")), ("stop_at_clip_layer", int(-1, -24, -1))],
                 outputs: [("CLIP", "CLIP")]),
            node("CLIPTextEncode", "conditioning", required: [("text", input("STRING", ["multiline": true, "dynamicPrompts": true])),
                                                              ("clip", input("CLIP"))], outputs: [("CONDITIONING", "CONDITIONING")]),
            node("EmptyLatentImage", "latent", required: [("width", int(512, 16, 16384)), ("height", int(512, 16, 16384)),
                                                          ("batch_size", int(1, 1, 4096))], outputs: [("LATENT", "LATENT")]),
            node("KSampler", "sampling", required: sampling + [("denoise", float(1, 0, 1))], outputs: [("LATENT", "LATENT")]),
            node("KSamplerAdvanced", "sampling",
                 required: [("add_noise", input(["enable", "disable"]))] + sampling.map { $0.0 == "seed" ? ("noise_seed", $0.1) : $0 }
                     + [("start_at_step", int(0, 0, 10000)), ("end_at_step", int(10000, 0, 10000)),
                        ("return_with_leftover_noise", input(["disable", "enable"]))], outputs: [("LATENT", "LATENT")]),
            node("VAEDecode", "latent", required: [("samples", input("LATENT")), ("vae", input("VAE"))], outputs: [("IMAGE", "IMAGE")]),
            node("VAEEncode", "latent", required: [("pixels", input("IMAGE")), ("vae", input("VAE"))], outputs: [("LATENT", "LATENT")]),
            node("VAEEncodeForInpaint", "latent/inpaint", required: [("pixels", input("IMAGE")), ("vae", input("VAE")), ("mask", input("MASK")),
                                                                     ("grow_mask_by", int(6, 0, 64))], outputs: [("LATENT", "LATENT")]),
            node("SetLatentNoiseMask", "latent/inpaint", required: [("samples", input("LATENT")), ("mask", input("MASK"))],
                 outputs: [("LATENT", "LATENT")]),
            node("LoadImage", "image", required: [("image", input(images, ["image_upload": true]))],
                 outputs: [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
            node("LoadImageMask", "mask", required: [("image", input(images, ["image_upload": true])),
                                                     ("channel", input(["alpha", "red", "green", "blue"]))], outputs: [("MASK", "MASK")]),
            node("SaveImage", "image", required: [("images", input("IMAGE")), ("filename_prefix", input("STRING", ["default": "ComfyUI"]))],
                 output: true),
            node("PreviewImage", "image", required: [("images", input("IMAGE"))], output: true),
            node("LoraLoader", "loaders", required: [("model", input("MODEL")), ("clip", input("CLIP")), ("lora_name", input(folders.files("loras"))),
                                                     ("strength_model", float(1, -100, 100)), ("strength_clip", float(1, -100, 100))],
                 outputs: [("MODEL", "MODEL"), ("CLIP", "CLIP")]),
            node("VAELoader", "loaders", required: [("vae_name", input(folders.files("vae")))], outputs: [("VAE", "VAE")]),
            node("LatentUpscale", "latent", required: [("samples", input("LATENT")), ("upscale_method", input(ComfyImport.latentMethods.keys.sorted())),
                                                       ("width", int(512, 0, 16384)), ("height", int(512, 0, 16384)),
                                                       ("crop", input(["disabled", "center"]))], outputs: [("LATENT", "LATENT")]),
            node("UpscaleModelLoader", "loaders", required: [("model_name", input(folders.files("upscale_models")))],
                 outputs: [("UPSCALE_MODEL", "UPSCALE_MODEL")]),
            node("ImageUpscaleWithModel", "image/upscaling", required: [("upscale_model", input("UPSCALE_MODEL")), ("image", input("IMAGE"))],
                 outputs: [("IMAGE", "IMAGE")]),
            node("VAEDecodeTiled", "_for_testing", required: [("samples", input("LATENT")), ("vae", input("VAE")),
                                                              ("tile_size", int(512, 64, 4096)), ("overlap", int(64, 0, 4096))],
                 outputs: [("IMAGE", "IMAGE")]),
            node("VAEEncodeTiled", "_for_testing", required: [("pixels", input("IMAGE")), ("vae", input("VAE")),
                                                              ("tile_size", int(512, 64, 4096)), ("overlap", int(64, 0, 4096))],
                 outputs: [("LATENT", "LATENT")]),
            node("CLIPTextEncodeSDXL", "advanced/conditioning",
                 required: [("clip", input("CLIP")), ("width", int(1024, 0, 16384)), ("height", int(1024, 0, 16384)),
                            ("crop_w", int(0, 0, 16384)), ("crop_h", int(0, 0, 16384)), ("target_width", int(1024, 0, 16384)),
                            ("target_height", int(1024, 0, 16384)), ("text_g", input("STRING", ["multiline": true])),
                            ("text_l", input("STRING", ["multiline": true]))],
                 outputs: [("CONDITIONING", "CONDITIONING")]),
            node("ControlNetLoader", "loaders", required: [("control_net_name", input(folders.files("controlnet")))],
                 outputs: [("CONTROL_NET", "CONTROL_NET")]),
            node("ControlNetApplyAdvanced", "conditioning/controlnet",
                 required: [("positive", input("CONDITIONING")), ("negative", input("CONDITIONING")), ("control_net", input("CONTROL_NET")),
                            ("image", input("IMAGE")), ("strength", float(1, 0, 10)), ("start_percent", float(0, 0, 1)), ("end_percent", float(1, 0, 1))],
                 outputs: [("CONDITIONING", "positive"), ("CONDITIONING", "negative")]),
            node("ControlNetApply", "conditioning/controlnet",
                 required: [("conditioning", input("CONDITIONING")), ("control_net", input("CONTROL_NET")), ("image", input("IMAGE")),
                            ("strength", float(1, 0, 10))],
                 outputs: [("CONDITIONING", "CONDITIONING")]),
            node("ImageScale", "image/upscaling", required: [("image", input("IMAGE")), ("upscale_method", input(ComfyImport.imageFilters.keys.sorted())),
                                                             ("width", int(512, 0, 16384)), ("height", int(512, 0, 16384)),
                                                             ("crop", input(["disabled", "center"]))], outputs: [("IMAGE", "IMAGE")]),
        ]
        var result = Dictionary(uniqueKeysWithValues: entries.compactMap { entry in (entry["name"] as? String).map { ($0, entry as Any) } })
        // The web front end looks these loaders up by name when it builds any model widget (its
        // model-to-node table); they are listed so that it starts, and refused if a prompt uses them.
        let expected: [(String, String, String)] = [
            ("ImageOnlyCheckpointLoader", "ckpt_name", "checkpoints"), ("LoraLoaderModelOnly", "lora_name", "loras"),
            ("ControlNetLoader", "control_net_name", "controlnet"), ("UNETLoader", "unet_name", "unet"),
            ("UpscaleModelLoader", "model_name", "upscale_models"), ("StyleModelLoader", "style_model", "style_models"),
            ("GLIGENLoader", "gligen_name", "gligen"),
        ]
        for (name, input, folder) in expected where result[name] == nil {
            var entry = node(name, "_not in sdflow", required: [(input, self.input(folders.files(folder)))])
            entry["description"] = "Not available in sdflow (listed for the web editor); a prompt that uses it is refused."
            entry["deprecated"] = true
            result[name] = entry
        }
        return result
    }
}
