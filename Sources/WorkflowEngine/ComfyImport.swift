import Foundation
import NodeKit

/// An sdflow workflow equivalent to a ComfyUI workflow exported "for API" (`sdflow run
/// workflow_api.json`, `sdflow import`): `{id: {class_type, inputs}}`, optionally wrapped as
/// `{"prompt": ...}`. Each ComfyUI node becomes sdflow nodes named `n<id>`; its links
/// (`[id, output index]`) become `!ref`s. Model and image file names become workflow parameters
/// (`ckpt_4`, `image_10`, ...) to set with `--set`, since ComfyUI names them relative to its own
/// folders. ComfyUI's "workflow" (UI) format is refused with a message saying how to export for API.
public struct ComfyImport {
    /// The workflow as YAML text.
    public let yaml: String
    /// What differs from ComfyUI, or needs the user (model files).
    public let notes: [String]

    /// A workflow ComfyUI cannot be mapped from, naming the node.
    public struct ImportError: Error, CustomStringConvertible {
        public let description: String
        /// The ComfyUI node at fault and its class, when one is.
        public var node: String?
        public var classType: String?
        /// What is wrong with the node, without its name (`description` has both).
        public var message: String?
    }

    /// The classes this import maps.
    public static let supportedClasses = [
        "CheckpointLoaderSimple", "CLIPSetLastLayer", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "KSamplerAdvanced",
        "VAEDecode", "VAEEncode", "VAEEncodeForInpaint", "SetLatentNoiseMask", "LoadImage", "LoadImageMask", "SaveImage",
        "PreviewImage", "LoraLoader", "VAELoader", "LatentUpscale", "ImageScale", "UpscaleModelLoader", "ImageUpscaleWithModel",
        "VAEDecodeTiled", "VAEEncodeTiled", "ControlNetLoader", "ControlNetApplyAdvanced", "ControlNetApply",
        "CLIPTextEncodeSDXL",
    ]

    /// ComfyUI sampler names -> sdflow's.
    public static let samplers = ["euler": "euler", "euler_ancestral": "euler_a", "ddim": "ddim", "ddpm": "ddpm", "dpmpp_2m": "dpmpp_2m",
                           "lcm": "lcm"]
    /// ComfyUI schedulers -> denoise's `schedule` (the nearest spacing; see the notes).
    public static let schedulers = ["normal": "linspace", "karras": "karras", "simple": "trailing", "sgm_uniform": "trailing",
                             "ddim_uniform": "leading"]
    /// ComfyUI's upscale methods -> upscale_latent's methods and resize_image's filters.
    public static let latentMethods = ["nearest-exact": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic", "area": "bilinear",
                                "bislerp": "bilinear"]
    public static let imageFilters = ["nearest-exact": "nearest", "bilinear": "bilinear", "bicubic": "bicubic", "lanczos": "lanczos",
                               "area": "bilinear"]

    /// Whether `data` is a ComfyUI workflow (API or UI format) rather than an sdflow one.
    public static func recognises(_ data: Data) -> Bool {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        if object["nodes"] is [Any], object["links"] is [Any] { return true }  // the UI format
        return apiNodes(object) != nil
    }

    /// The nodes of an API-format object, or nil.
    static func apiNodes(_ object: [String: Any]) -> [String: [String: Any]]? {
        let nodes = (object["prompt"] as? [String: Any]) ?? object
        var result: [String: [String: Any]] = [:]
        for (id, value) in nodes {
            guard let node = value as? [String: Any], node["class_type"] is String else { return nil }
            result[id] = node
        }
        return result.isEmpty ? nil : result
    }

    /// Finds a file ComfyUI names relative to one of its folders ("checkpoints", "loras", "vae",
    /// "input"): the path to use, or an error (a server confines names to its folders).
    public typealias FileLookup = @Sendable (_ folder: String, _ name: String) throws -> String

    /// `files`: where the named files are; without it each becomes a parameter to set with `--set`.
    /// `registry`: sdflow's own node types, which a graph may use by their names (their inputs by
    /// port and parameter name; a server passes `files`, and then their file parameters are looked
    /// up as ComfyUI's are, and nodes that write files of their own choosing are refused).
    /// `previews`: a folder the samplers write live previews into (a server sends them to its clients).
    public init(json data: Data, source: String, files: FileLookup? = nil, registry: NodeRegistry? = nil, previews: String? = nil) throws {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ImportError(description: "\(source): not a JSON object")
        }
        if object["nodes"] is [Any], object["links"] is [Any] {
            throw ImportError(description: "\(source) is a ComfyUI workflow in its UI format; sdflow reads the API format: in ComfyUI, "
                              + "use Workflow > Export (API) (or 'Save (API Format)' with the dev mode options on)")
        }
        guard let nodes = ComfyImport.apiNodes(object) else {
            throw ImportError(description: "\(source): not a ComfyUI API workflow (an object of {\"class_type\", \"inputs\"} nodes)")
        }
        var builder = Builder(nodes: nodes, files: files, registry: registry)
        builder.previews = previews
        // Numeric ids in order (ComfyUI's own are numbers as text), then the rest.
        for id in nodes.keys.sorted(by: { (Int($0) ?? .max, $0) < (Int($1) ?? .max, $1) }) { try builder.translate(id) }
        yaml = ImportedWorkflow.yaml(description: "Imported from the ComfyUI API workflow " + source, notes: builder.notes,
                                     parameters: builder.parameters.map { ($0.0, yamlString($0.1)) }, nodes: builder.lines)
        notes = builder.notes
    }

    /// The translation's state: the sdflow nodes written so far and how ComfyUI outputs map to them.
    struct Builder {
        let nodes: [String: [String: Any]]
        var lines: [String] = []
        var parameters: [(String, String)] = []
        var notes: [String] = []
        /// ComfyUI (node, output index) -> an sdflow `!ref` target ("n4.unet").
        var outputs: [String: [String]] = [:]
        /// ComfyUI nodes whose CLIP output carries a clip skip (CLIPSetLastLayer).
        var clipSkips: [String: Int] = [:]
        /// ComfyUI nodes whose CONDITIONING outputs carry ControlNets (ControlNetApply...): the apply_controlnet output.
        var controls: [String: String] = [:]
        /// ComfyUI nodes whose CONDITIONING carries SDXL sizes (CLIPTextEncodeSDXL): the sdxl_time_ids output.
        var timeIds: [String: String] = [:]
        /// ComfyUI nodes whose LATENT output carries a noise mask (its ref, and pixels to grow it by).
        var latentMasks: [String: (mask: String, grow: Int)] = [:]
        var done = Set<String>()
        /// The VAE empty latents take their scale from: the first checkpoint's (ComfyUI's
        /// EmptyLatentImage assumes SD's 8 pixels per latent cell).
        let scaleVAE: String?

        let files: FileLookup?
        let registry: NodeRegistry?
        var previews: String?

        init(nodes: [String: [String: Any]], files: FileLookup?, registry: NodeRegistry?) {
            self.nodes = nodes
            self.files = files
            self.registry = registry
            let checkpoint = nodes.filter { ($0.value["class_type"] as? String) == "CheckpointLoaderSimple" }.keys
                .min { (Int($0) ?? .max, $0) < (Int($1) ?? .max, $1) }
            scaleVAE = checkpoint.map { "!ref \(Builder.name($0)).vae" }
        }

        /// Translates node `id` (after the nodes it links to).
        mutating func translate(_ id: String) throws {
            guard !done.contains(id) else { return }
            done.insert(id)
            guard let node = nodes[id], let type = node["class_type"] as? String else { return }
            let inputs = node["inputs"] as? [String: Any] ?? [:]
            let input = Inputs(id: id, type: type, values: inputs)
            // Linked nodes first, so their outputs are known.
            for case let link as [Any] in inputs.sorted(by: { $0.key < $1.key }).map(\.value) {
                guard link.count == 2, let target = Inputs.linkID(link[0]) else { continue }
                guard nodes[target] != nil else { throw input.error("links to node \(target), which the workflow does not have") }
                try translate(target)
            }
            let name = Builder.name(id)
            switch type {
            case "CheckpointLoaderSimple":
                let parameter = try file("ckpt_\(id)", try input.text("ckpt_name"), "the checkpoint", folder: "checkpoints", input)
                emit(name, "load_checkpoint", ["path": "!param \(parameter)"])
                outputs[id] = ["\(name).unet", "\(name).clip", "\(name).vae"]
            case "CLIPSetLastLayer":
                let stop = try input.integer("stop_at_clip_layer")
                guard stop < 0 else { throw input.error("stop_at_clip_layer \(stop) must be negative") }
                outputs[id] = [try target(input, "clip")]
                clipSkips[id] = -stop
            case "CLIPTextEncode":
                let clip = try input.link("clip")
                var fields = ["clip": try link(input, "clip"), "text": yamlString(try input.text("text")), "weighting": "comfy"]
                if let skip = clipSkips[clip.node] { fields["clip_skip"] = String(skip) }
                emit(name, "clip_encode", fields)
                outputs[id] = ["\(name).conditioning"]
            case "CLIPTextEncodeSDXL":
                // One prompt for both encoders; the sizes become denoise's time_ids.
                let (g, l) = (try input.text("text_g"), try input.text("text_l"))
                if g != l && !l.isEmpty {
                    notes.append("node \(id) CLIPTextEncodeSDXL: text_l differs from text_g; sdflow encodes text_g with both encoders")
                }
                emit(name, "clip_encode", ["clip": try link(input, "clip"), "text": yamlString(g), "weighting": "comfy"])
                emit(name + "_sizes", "sdxl_time_ids", [
                    "width": String(try input.integer("width")), "height": String(try input.integer("height")),
                    "crop_left": String(try input.integer("crop_w")), "crop_top": String(try input.integer("crop_h")),
                    "target_width": String(try input.integer("target_width")), "target_height": String(try input.integer("target_height")),
                ])
                timeIds[id] = "\(name)_sizes.time_ids"
                outputs[id] = ["\(name).conditioning"]
            case "EmptyLatentImage":
                let batch = (try? input.integer("batch_size")) ?? 1
                if batch != 1 { notes.append("node \(id) EmptyLatentImage: batch_size \(batch); sdflow makes one latent (run a batch of seeds instead)") }
                var fields = ["width": String(try input.integer("width")), "height": String(try input.integer("height"))]
                fields["vae"] = scaleVAE
                emit(name, "empty_latent", fields)
                outputs[id] = ["\(name).latent"]
            case "KSampler", "KSamplerAdvanced":
                try sampler(id, name, input, advanced: type == "KSamplerAdvanced")
            case "VAEDecode":
                emit(name, "vae_decode", ["latent": try link(input, "samples"), "vae": try link(input, "vae")])
                outputs[id] = ["\(name).image"]
            case "VAEDecodeTiled", "VAEEncodeTiled":
                // ComfyUI's tiles are in image pixels as sdflow's; sdflow's sides are multiples of 8.
                let size = ((try? input.integer("tile_size")) ?? 512) / 8 * 8, overlap = ((try? input.integer("overlap")) ?? 64) / 8 * 8
                var fields = ["vae": try link(input, "vae"), "tiled": "on", "tile_size": String(size), "tile_overlap": String(overlap)]
                if type == "VAEDecodeTiled" {
                    fields["latent"] = try link(input, "samples")
                    emit(name, "vae_decode", fields)
                    outputs[id] = ["\(name).image"]
                } else {
                    fields["image"] = try link(input, "pixels")
                    emit(name, "vae_encode", fields)
                    outputs[id] = ["\(name).latent"]
                }
            case "UpscaleModelLoader":
                let parameter = try file("upscaler_\(id)", try input.text("model_name"), "the upscaler model", folder: "upscale_models", input)
                emit(name, "load_upscaler", ["path": "!param \(parameter)"])
                outputs[id] = ["\(name).upscaler"]
            case "ControlNetLoader":
                let parameter = try file("controlnet_\(id)", try input.text("control_net_name"), "the ControlNet", folder: "controlnet", input)
                emit(name, "load_controlnet", ["path": "!param \(parameter)"])
                outputs[id] = ["\(name).controlnet"]
            case "ControlNetApplyAdvanced", "ControlNetApply":
                // ComfyUI attaches the ControlNet to the conditioning; sdflow's denoise takes it as 'control'
                // (for the whole guided batch, as ComfyUI applies it to the negative too).
                let advanced = type == "ControlNetApplyAdvanced"
                let positive = try input.link(advanced ? "positive" : "conditioning")
                var fields = ["controlnet": try link(input, "control_net"), "image": try link(input, "image"),
                              "strength": format(try input.number("strength")), "resize_mode": "crop_and_resize"]
                if advanced {
                    fields["start_percent"] = format(try input.number("start_percent"))
                    fields["end_percent"] = format(try input.number("end_percent"))
                    if fields["start_percent"] != "0" || fields["end_percent"] != "1" {
                        notes.append("node \(id) \(type): start/end percent are fractions of the steps run (diffusers' rule); ComfyUI's are of "
                                     + "the noise levels, which agree with the 'normal' scheduler at full denoise")
                    }
                }
                if let previous = controls[positive.node] { fields["control"] = "!ref " + previous }
                emit(name, "apply_controlnet", fields)
                controls[id] = "\(name).control"
                outputs[id] = advanced ? [try target(input, "positive"), try target(input, "negative")] : [try target(input, "conditioning")]
            case "ImageUpscaleWithModel":
                emit(name, "upscale_image", ["upscaler": try link(input, "upscale_model"), "image": try link(input, "image")])
                outputs[id] = ["\(name).image"]
            case "VAEEncode", "VAEEncodeForInpaint":
                emit(name, "vae_encode", ["image": try link(input, "pixels"), "vae": try link(input, "vae")])
                outputs[id] = ["\(name).latent"]
                if type == "VAEEncodeForInpaint" {
                    latentMasks[id] = (try link(input, "mask"), (try? input.integer("grow_mask_by")) ?? 6)
                    notes.append("node \(id) VAEEncodeForInpaint: the image is encoded as it is (ComfyUI first greys the masked pixels); the mask goes to the sampler")
                }
            case "SetLatentNoiseMask":
                outputs[id] = [try target(input, "samples")]
                latentMasks[id] = (try link(input, "mask"), 0)
            case "LoadImage":
                let parameter = try file("image_\(id)", try input.text("image"), "the image", folder: "input", input)
                emit(name, "load_image", ["path": "!param \(parameter)"])
                // ComfyUI's MASK output is 1 - alpha (transparent pixels are repainted).
                emit(name + "_mask", "load_mask", ["path": "!param \(parameter)", "channel": "alpha", "invert": "true"])
                outputs[id] = ["\(name).image", "\(name)_mask.mask"]
            case "LoadImageMask":
                let parameter = try file("mask_\(id)", try input.text("image"), "the mask image", folder: "input", input)
                let channel = try input.text("channel")
                var fields = ["path": "!param \(parameter)", "channel": channel == "alpha" ? "alpha" : "luminance"]
                if channel == "alpha" { fields["invert"] = "true" }
                if channel != "alpha" { notes.append("node \(id) LoadImageMask: channel '\(channel)' read as luminance") }
                emit(name, "load_mask", fields)
                outputs[id] = ["\(name).mask"]
            case "SaveImage", "PreviewImage":
                let prefix = type == "SaveImage" ? ((try? input.text("filename_prefix")) ?? "ComfyUI") : "preview"
                let folder = type == "SaveImage" ? "output" : "temp"
                parameters.append(("output_\(id)", "\(folder)/\(prefix)_\(id)_{seed}.png"))
                emit(name, "save_image", ["image": try link(input, "images"), "path": "!param output_\(id)"])
            case "LoraLoader":
                let parameter = try file("lora_\(id)", try input.text("lora_name"), "the LoRA", folder: "loras", input)
                emit(name, "load_lora", ["unet": try link(input, "model"), "clip": try link(input, "clip"), "path": "!param \(parameter)",
                                         "strength_model": format(try input.number("strength_model")),
                                         "strength_clip": format(try input.number("strength_clip"))])
                outputs[id] = ["\(name).unet", "\(name).clip"]
            case "VAELoader":
                let parameter = try file("vae_\(id)", try input.text("vae_name"), "the VAE", folder: "vae", input)
                emit(name, "load_vae", ["path": "!param \(parameter)"])
                outputs[id] = ["\(name).vae"]
            case "LatentUpscale":
                let method = try input.text("upscale_method")
                guard let mapped = ComfyImport.latentMethods[method] else { throw input.error("upscale_method '\(method)' is not supported") }
                if method != mapped { notes.append("node \(id) LatentUpscale: '\(method)' resized as \(mapped)") }
                if (try? input.text("crop")) == "center" { notes.append("node \(id) LatentUpscale: crop 'center' not done (the latent is stretched)") }
                emit(name, "upscale_latent", ["latent": try link(input, "samples"), "method": mapped,
                                              "width": String(try input.integer("width")), "height": String(try input.integer("height"))])
                outputs[id] = ["\(name).latent"]
            case "ImageScale":
                let method = try input.text("upscale_method")
                guard let filter = ComfyImport.imageFilters[method] else { throw input.error("upscale_method '\(method)' is not supported") }
                let mode = (try? input.text("crop")) == "center" ? "fill" : "exact"
                emit(name, "resize_image", ["image": try link(input, "image"), "width": String(try input.integer("width")),
                                            "height": String(try input.integer("height")), "filter": filter, "mode": mode])
                outputs[id] = ["\(name).image"]
            default:
                guard let entry = registry?.entry(type) else {
                    throw input.error("has no sdflow equivalent; the supported classes are " + ComfyImport.supportedClasses.joined(separator: ", ")
                                      + " and sdflow's own node types")
                }
                try native(id, name, entry.description, input)
            }
        }


        /// One of sdflow's own node types, used by name: links to its input ports, literals to its parameters.
        mutating func native(_ id: String, _ name: String, _ d: NodeDescription, _ input: Inputs) throws {
            var fields: [String: String] = [:]
            for (key, value) in input.values.sorted(by: { $0.key < $1.key }) {
                if d.input(key) != nil {
                    fields[key] = try link(input, key)
                    continue
                }
                guard let parameter = d.parameter(key) else {
                    throw input.error("'\(key)' is neither an input nor a parameter of \(d.name)")
                }
                switch (parameter.kind, value) {
                case (.outputPath, _) where files != nil:
                    throw input.error("writes files of its own choosing ('\(key)'); use SaveImage")
                case (.inputPath, let path as String) where files != nil && !path.isEmpty:
                    let folder = ComfyImportFolders.folder(of: d.name)
                    do { fields[key] = yamlString(try files?(folder, path) ?? path) } catch { throw input.error("'\(key)' '\(path)': \(error)") }
                case (_, let text as String):
                    fields[key] = yamlString(text)
                case (.boolean, let number as NSNumber):
                    fields[key] = number.boolValue ? "true" : "false"
                case (_, let number as NSNumber):
                    fields[key] = format(number.doubleValue)
                default:
                    throw input.error("'\(key)' is not a value of \(parameter.kind)")
                }
            }
            emit(name, d.name, fields)
            outputs[id] = d.outputs.map { "\(name).\($0.name)" }
        }

        /// The sdflow name of ComfyUI node `id`.
        static func name(_ id: String) -> String { "n" + id.map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() }

        /// KSampler and KSamplerAdvanced as a `denoise`.
        mutating func sampler(_ id: String, _ name: String, _ input: Inputs, advanced: Bool) throws {
            let samplerName = try input.text("sampler_name"), scheduler = try input.text("scheduler")
            guard let sampler = ComfyImport.samplers[samplerName] else {
                throw input.error("sampler_name '\(samplerName)' is not available in sdflow (it has " + ComfyImport.samplers.keys.sorted().joined(separator: ", ") + ")")
            }
            guard let schedule = ComfyImport.schedulers[scheduler] else {
                throw input.error("scheduler '\(scheduler)' is not available in sdflow (it has " + ComfyImport.schedulers.keys.sorted().joined(separator: ", ") + ")")
            }
            let steps = try input.integer("steps")
            var fields = ["unet": try link(input, "model"), "positive": try link(input, "positive"), "negative": try link(input, "negative"),
                          "latent": try link(input, "latent_image"), "sampler": sampler, "schedule": schedule,
                          "steps": String(steps), "cfg": format(try input.number("cfg")),
                          "seed": String(try input.integer(advanced ? "noise_seed" : "seed"))]
            if advanced {
                let start = try input.integer("start_at_step"), end = try input.integer("end_at_step")
                // sdflow starts img2img at steps - int(steps x strength): a hair over the exact fraction.
                if start > 0 { fields["strength"] = format(Swift.min(1, Double(steps - start) / Double(steps) + 1e-9)) }
                if end < steps { fields["end_at_step"] = String(end) }
                if (try input.text("add_noise")) == "disable" { fields["add_noise"] = "false" }
            } else {
                // ComfyUI runs `steps` steps at the end of a schedule of int(steps / denoise) steps.
                let denoise = try input.number("denoise")
                guard denoise > 0 && denoise <= 1 else { throw input.error("denoise \(format(denoise)) is not in (0, 1]") }
                if denoise < 1 {
                    let total = Int(Double(steps) / denoise)
                    fields["steps"] = String(total)
                    fields["strength"] = format(Swift.min(1, Double(steps) / Double(total) + 1e-9))
                } else {
                    fields["strength"] = "1"
                }
            }
            let (positive, negative) = (try input.link("positive").node, try input.link("negative").node)
            if let control = controls[positive] ?? controls[negative] {
                fields["control"] = "!ref " + control
            }
            if let sizes = timeIds[positive] ?? timeIds[negative] { fields["time_ids"] = "!ref " + sizes }
            let latent = try input.link("latent_image")
            if let mask = latentMasks[latent.node] {
                fields["mask"] = mask.mask
                if mask.grow > 0 { fields["mask_grow"] = String(mask.grow) }
            }
            if let previews { fields["preview"] = yamlString(previews) }
            if scheduler != "karras" {
                notes.append("node \(id) \(input.type): scheduler '\(scheduler)' as diffusers' \(schedule) timesteps (ComfyUI gives the model whole "
                             + "timesteps and scales the first noise by sqrt(1 + sigma^2)), so images differ slightly from ComfyUI's")
            }
            emit(name, "denoise", fields)
            outputs[id] = ["\(name).latent"]
        }

        /// An sdflow node as one YAML line.
        mutating func emit(_ name: String, _ type: String, _ fields: [String: String]) {
            let body = fields.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            lines.append("  \(name): {type: \(type)" + body.map { ", " + $0 }.joined() + "}")
        }

        /// A workflow parameter for a file ComfyUI names relative to its own `folder`: found by
        /// `files`, or given by the user.
        mutating func file(_ parameter: String, _ name: String, _ what: String, folder: String, _ input: Inputs) throws -> String {
            if let files {
                do { parameters.append((parameter, try files(folder, name))) } catch { throw input.error("\(what) '\(name)': \(error)") }
                return parameter
            }
            parameters.append((parameter, name))
            notes.append("\(what) '\(name)': give its path with --set \(parameter)=PATH (ComfyUI names it relative to its models or input folder)")
            return parameter
        }

        /// The `!ref` of a linked input.
        func link(_ input: Inputs, _ name: String) throws -> String { "!ref " + (try target(input, name)) }

        /// The sdflow output a linked input comes from ("n4.clip").
        func target(_ input: Inputs, _ name: String) throws -> String {
            let (node, index) = try input.link(name)
            guard let refs = outputs[node] else { throw input.error("input '\(name)' links to node \(node), which has no outputs") }
            guard refs.indices.contains(index) else { throw input.error("input '\(name)' links to output \(index) of node \(node), which has \(refs.count)") }
            return refs[index]
        }
    }

    /// One node's inputs, read with errors naming the node.
    struct Inputs {
        let id: String
        let type: String
        let values: [String: Any]

        func error(_ message: String) -> ImportError {
            ImportError(description: "node \(id) (\(type)): \(message)", node: id, classType: type, message: message)
        }

        func value(_ name: String) throws -> Any {
            guard let value = values[name] else { throw error("input '\(name)' is missing") }
            return value
        }

        func text(_ name: String) throws -> String {
            guard let text = try value(name) as? String else { throw error("input '\(name)' is not text") }
            return text
        }

        func number(_ name: String) throws -> Double {
            guard let number = try value(name) as? NSNumber else {
                throw error("input '\(name)' is not a number")
            }
            return number.doubleValue
        }

        func integer(_ name: String) throws -> Int {
            let number = try self.number(name)
            guard number == number.rounded(), abs(number) < 9e18 else { throw error("input '\(name)' is not an integer") }
            return Int(number)
        }

        /// A linked input: the node it comes from and the output's index.
        func link(_ name: String) throws -> (node: String, index: Int) {
            guard let link = try value(name) as? [Any], link.count == 2, let node = Inputs.linkID(link[0]),
                  let index = (link[1] as? NSNumber)?.intValue else {
                throw error("input '\(name)' is not a link ([node id, output index])")
            }
            return (node, index)
        }

        /// A link's node id: text, or a number (as some clients write it).
        static func linkID(_ value: Any) -> String? {
            if let text = value as? String { return text }
            if let number = value as? NSNumber { return number.stringValue }
            return nil
        }
    }
}

/// The folder a server looks up the file parameters of sdflow's own node types in: the models
/// subfolder of a loader, or the input folder.
public enum ComfyImportFolders {
    static let loaders = ["load_checkpoint": "checkpoints", "load_lora": "loras", "load_vae": "vae", "load_upscaler": "upscale_models",
                          "clip_encode": "embeddings", "load_controlnet": "controlnet"]

    public static func folder(of nodeType: String) -> String { loaders[nodeType] ?? "input" }
}
