import Foundation

/// An sdflow workflow equivalent to an AUTOMATIC1111 recipe (`sdflow import`, and `sdflow run`
/// of an A1111 image): txt2img, or img2img when the recipe has a denoising strength (without
/// hires fix), with one `load_lora` per `<lora:name:w>` tag and a `load_vae` for its "VAE". A hires
/// fix becomes a second `denoise` at the denoising strength after `upscale_latent` (A1111's latent
/// upscalers), or in image space after `resize_image` (Lanczos, Nearest) or an upscaler model
/// (`load_upscaler` + `upscale_image`, the file given by the user).
public struct A1111Import {
    /// The workflow as YAML text.
    public let yaml: String
    /// Settings that could not be mapped, or that need the user (the checkpoint, LoRA files).
    public let notes: [String]

    /// A1111 sampler names -> (sdflow sampler, Karras schedule).
    static let samplers: [String: (String, Bool)] = [
        "Euler a": ("euler_a", false), "Euler": ("euler", false), "DDIM": ("ddim", false), "DDPM": ("ddpm", false),
        "DPM++ 2M": ("dpmpp_2m", false), "DPM++ 2M Karras": ("dpmpp_2m", true), "Euler Karras": ("euler", true),
    ]

    /// A1111's latent hires upscalers -> upscale_latent's method (its antialiased ones have no exact equivalent).
    static let latentUpscalers: [String: String] = [
        "Latent": "bilinear", "Latent (antialiased)": "bilinear", "Latent (bicubic)": "bicubic",
        "Latent (bicubic antialiased)": "bicubic", "Latent (nearest)": "nearest", "Latent (nearest-exact)": "nearest-exact",
    ]

    /// A1111's plain image resizes as hires upscalers -> resize_image's filter.
    static let imageResizes: [String: String] = ["None": "lanczos", "Lanczos": "lanczos", "Nearest": "nearest"]

    /// Settings this import uses (every other one is listed in the notes as not mapped).
    static let mapped: Set<String> = ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Denoising strength",
                                      "Clip skip", "Model", "Model hash", "Lora hashes", "Version", "RNG", "Eta", "Emphasis",
                                      "VAE", "VAE hash"]

    public init(_ p: A1111Parameters, source: String) {
        var notes: [String] = []
        func number(_ key: String) -> Double? { p[key].flatMap { Double($0.trimmingCharacters(in: .whitespaces)) } }

        var sampler = "euler_a", karras = false
        if let name = p["Sampler"] {
            if let known = A1111Import.samplers[name] { (sampler, karras) = known } else {
                notes.append("sampler '\(name)' has no sdflow equivalent; using euler_a (sdflow has euler_a, euler, ddim, ddpm, dpmpp_2m)")
            }
        }
        if let schedule = p["Schedule type"] {
            if schedule == "Karras", sampler == "euler" || sampler == "dpmpp_2m" { karras = true }
            else if schedule != "Automatic" { notes.append("schedule type '\(schedule)' not mapped; using the sampler's default") }
        }
        var width = 512, height = 512
        if let size = p["Size"] {
            let parts = size.split(separator: "x").compactMap { Int($0) }
            if parts.count == 2 { (width, height) = (parts[0], parts[1]) } else { notes.append("size '\(size)' not understood; using 512x512") }
        }
        let hires = p.settings.contains { $0.key.hasPrefix("Hires") }
        let strength = hires ? nil : number("Denoising strength")
        // The hires fix's second pass: the latent upscaled to int(size x scale) (or "Hires resize"), whole cells.
        // method: upscale_latent's, or "image:FILTER" (A1111's plain resizes) or "model" (an upscaler model) in image space.
        var second: (method: String, width: Int, height: Int, steps: Int, strength: Double)?
        if hires {
            let upscaler = p["Hires upscaler"] ?? "Latent"
            let scale = number("Hires upscale") ?? 2
            var target = (Int(Double(width) * scale), Int(Double(height) * scale))
            if let resize = p["Hires resize"] {
                let parts = resize.split(separator: "x").compactMap { Int($0) }
                if parts.count == 2, parts[0] > 0, parts[1] > 0 {
                    target = (parts[0], parts[1])
                    notes.append("hires resize \(resize): the latent is stretched to it (A1111 fits and crops)")
                }
            }
            let method: String
            if let latent = A1111Import.latentUpscalers[upscaler] {
                if upscaler.contains("antialiased") { notes.append("hires upscaler '\(upscaler)': sdflow resizes without antialiasing") }
                method = latent
            } else if let filter = A1111Import.imageResizes[upscaler] {
                method = "image:" + filter
            } else {
                method = "model"
                notes.append("hires upscaler '\(upscaler)': give its model file (ESRGAN family, .pth or .safetensors) with --set hires_upscaler_model=PATH")
            }
            // "Hires steps: 0" (or none) runs the second pass with the first pass's steps.
            let steps = number("Hires steps").map(Int.init).flatMap { $0 > 0 ? $0 : nil } ?? Int(number("Steps") ?? 20)
            second = (method, target.0 / 8 * 8, target.1 / 8 * 8, steps, number("Denoising strength") ?? 0.7)
        }
        let model = [p["Model"].map { "'\($0)'" }, p["Model hash"].map { "hash \($0)" }].compactMap { $0 }.joined(separator: ", ")
        notes.append("checkpoint: give the model file with --set checkpoint=PATH" + (model.isEmpty ? "" : " (the image was made with \(model))"))
        if let vae = p["VAE"] {
            notes.append("VAE '\(vae)'" + (p["VAE hash"].map { " (hash \($0))" } ?? "") + ": give its file with --set vae=PATH (empty: the checkpoint's own VAE)")
        }
        if p["RNG"] != "CPU" {
            notes.append("A1111 drew this image's noise on the GPU (its default RNG); sdflow draws torch's CPU noise, so the same seed gives another image")
        }
        if p["Emphasis"] == "No norm" { notes.append("emphasis 'No norm' not available; using A1111's original (mean restored)") }
        let unmapped = p.settings.filter { !A1111Import.mapped.contains($0.key) && !$0.key.hasPrefix("Hires") }
        if !unmapped.isEmpty {
            notes.append("not mapped: " + unmapped.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        }

        // Parameters, then nodes.
        var parameters: [(String, String)] = [("checkpoint", "\"\""), ("prompt", yamlString(p.promptWithoutTags)),
                                                ("negative", yamlString(p.negativePrompt))]
        if strength != nil { parameters.append(("image", "\"\"")) }
        var nodes = ["  model: {type: load_checkpoint, path: !param checkpoint}"]
        // A1111's "SD VAE": a separate VAE file replaces the checkpoint's wherever a VAE is used.
        var vae = "model.vae"
        if p["VAE"] != nil {
            parameters.append(("vae", "\"\""))
            nodes.append("  vae: {type: load_vae, vae: !ref model.vae, path: !param vae}")
            vae = "vae.vae"
        }
        var unet = "model.unet", clip = "model.clip"
        var loraNames: [String: Int] = [:]
        for (i, lora) in p.loras.enumerated() {
            var name = "lora_" + lora.name.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
            loraNames[name, default: 0] += 1
            if loraNames[name]! > 1 { name += "_\(loraNames[name]!)" }
            parameters.append((name, "\"\""))
            parameters.append((name + "_strength", format(lora.weight)))
            nodes.append("  \(name): {type: load_lora, unet: !ref \(unet), clip: !ref \(clip), path: !param \(name), "
                         + "strength_model: !param \(name)_strength, strength_clip: !param \(name)_strength}")
            (unet, clip) = ("\(name).unet", "\(name).clip")
            notes.append("LoRA '\(lora.name)' (weight \(format(lora.weight))): give its file with --set \(name)=PATH" + (i == 0 && p["Lora hashes"] != nil ? " (Lora hashes: \(p["Lora hashes"]!))" : ""))
        }
        let clipSkip = Int(number("Clip skip") ?? 1)
        parameters += [("sampler", sampler), ("steps", String(Int(number("Steps") ?? 20))), ("cfg", format(number("CFG scale") ?? 7)),
                       ("seed", String(Int(number("Seed") ?? 0))), ("width", String(width)), ("height", String(height)),
                       ("clip_skip", String(clipSkip))]
        if let strength { parameters.append(("strength", format(strength))) }
        if let second {
            parameters += [("hires_width", String(second.width)), ("hires_height", String(second.height))]
            if second.method == "model" {
                parameters.append(("hires_upscaler_model", "\"\""))
            } else {
                parameters.append(("hires_upscaler", second.method.hasPrefix("image:") ? String(second.method.dropFirst(6)) : second.method))
            }
            parameters += [("hires_steps", String(second.steps)), ("hires_strength", format(second.strength))]
        }
        parameters.append(("output", "out/{stem}-{seed}.png"))

        let encode = "clip: !ref \(clip), clip_skip: !param clip_skip"
        nodes.append("  positive: {type: clip_encode, \(encode), text: !param prompt}")
        nodes.append("  negative: {type: clip_encode, \(encode), text: !param negative}")
        if strength != nil {
            nodes.append("  photo: {type: load_image, path: !param image}")
            nodes.append("  sized: {type: resize_image, image: !ref photo, width: !param width, height: !param height, mode: fill}")
            nodes.append("  start: {type: vae_encode, vae: !ref \(vae), image: !ref sized}")
            notes.append("img2img: give the source image with --set image=PATH")
        } else {
            nodes.append("  start: {type: empty_latent, vae: !ref \(vae), width: !param width, height: !param height}")
        }
        var denoise = ["    type: denoise", "    unet: !ref \(unet)", "    positive: !ref positive", "    negative: !ref negative",
                       "    latent: !ref start", "    sampler: !param sampler", "    steps: !param steps", "    cfg: !param cfg",
                       "    seed: !param seed"]
        if karras { denoise.append("    schedule: karras") }
        if strength != nil { denoise.append("    strength: !param strength") }
        if let eta = number("Eta"), sampler == "ddim" { denoise.append("    eta: \(format(eta))") }
        nodes.append("  generated:\n" + denoise.joined(separator: "\n"))
        var final = "generated"
        if let second {
            if second.method == "model" || second.method.hasPrefix("image:") {
                // In image space: decode, upscale (with the model, then to the exact size), encode.
                nodes.append("  first_image: {type: vae_decode, vae: !ref \(vae), latent: !ref generated}")
                var picture = "first_image"
                if second.method == "model" {
                    nodes.append("  hires_model: {type: load_upscaler, path: !param hires_upscaler_model}")
                    nodes.append("  model_upscaled: {type: upscale_image, upscaler: !ref hires_model, image: !ref first_image}")
                    picture = "model_upscaled"
                }
                nodes.append("  resized: {type: resize_image, image: !ref \(picture), width: !param hires_width, height: !param hires_height, mode: fill"
                             + (second.method == "model" ? "" : ", filter: !param hires_upscaler") + "}")
                nodes.append("  upscaled: {type: vae_encode, vae: !ref \(vae), image: !ref resized}")
            } else {
                nodes.append("  upscaled: {type: upscale_latent, latent: !ref generated, vae: !ref \(vae), width: !param hires_width, "
                             + "height: !param hires_height, method: !param hires_upscaler}")
            }
            var refine = denoise.filter { !$0.contains("latent:") && !$0.contains("steps:") && !$0.contains("strength:") }
            refine += ["    latent: !ref upscaled", "    steps: !param hires_steps", "    strength: !param hires_strength"]
            nodes.append("  hires:\n" + refine.joined(separator: "\n"))
            final = "hires"
        }
        nodes.append("  image: {type: vae_decode, vae: !ref \(vae), latent: !ref \(final)}")
        nodes.append("  save: {type: save_image, image: !ref image, path: !param output}")

        yaml = ImportedWorkflow.yaml(description: "Imported from the AUTOMATIC1111 parameters of " + source, notes: notes,
                                     parameters: parameters, nodes: nodes)
        self.notes = notes
    }
}
