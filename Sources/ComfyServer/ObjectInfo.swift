import Foundation
import WorkflowEngine

/// `GET /object_info`: the ComfyUI classes sdflow runs (`ComfyImport.supportedClasses`), in ComfyUI's
/// format, with the model and image lists of the server's folders as their choices.
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

    static func all(_ folders: Folders) -> [String: Any] {
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
            node("ImageScale", "image/upscaling", required: [("image", input("IMAGE")), ("upscale_method", input(ComfyImport.imageFilters.keys.sorted())),
                                                             ("width", int(512, 0, 16384)), ("height", int(512, 0, 16384)),
                                                             ("crop", input(["disabled", "center"]))], outputs: [("IMAGE", "IMAGE")]),
        ]
        return Dictionary(uniqueKeysWithValues: entries.compactMap { entry in (entry["name"] as? String).map { ($0, entry as Any) } })
    }
}
