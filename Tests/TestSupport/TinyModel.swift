import Foundation
import SafeTensors
import TensorCore

/// The committed tiny SD model (Tests/Fixtures/tiny-sd, a diffusers folder written by
/// tools/reference/fixtures_models.py) and helpers that lay it out in other ways.
public enum TinyModel {
    /// The diffusers folder.
    public static var folder: String { Fixtures.path("tiny-sd") }

    /// Reference inputs and outputs computed by diffusers/transformers.
    public static func reference() throws -> SafeTensorsFile { try Fixtures.tensors("tiny-sd-reference.safetensors") }

    /// The LDM name -> diffusers name maps verified by diffusers' converters, per model shape
    /// ("tiny", "sd15") and component ("unet", "vae", "text_encoder").
    public static func keyMaps() throws -> [String: [String: [String: String]]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("ldm-keymap.json")))
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var result: [String: [String: [String: String]]] = [:]
        for (shape, value) in object {
            if let components = value as? [String: [String: String]] { result[shape] = components }
        }
        return result
    }

    /// The weight file of each component in the tiny folder.
    public static let weightFiles = [
        "unet": "unet/diffusion_pytorch_model.safetensors",
        "vae": "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder": "text_encoder/model.safetensors",
    ]

    /// LDM single-file prefixes of each component.
    public static let singleFilePrefixes = [
        "unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model.transformer.",
    ]

    /// Writes the tiny model as a single LDM file (F32), using the key map from diffusers'
    /// converters, with VAE attention as 1x1 convolutions and the usual training leftovers.
    /// `edit` may change the tensors before they are written.
    public static func writeSingleFile(to path: String, edit: (inout [String: Tensor]) -> Void = { _ in }) throws {
        let maps = try keyMaps()["tiny"]!
        var tensors: [String: Tensor] = [:]
        for (component, map) in maps {
            let file = try SafeTensorsFile(path: folder + "/" + weightFiles[component]!)
            for (ldm, diffusers) in map {
                var t = try file.tensor(diffusers)
                if component == "vae" && ldm.contains(".mid.attn_1.") && ldm.hasSuffix("weight") && t.rank == 2 {
                    t = t.reshaped(t.shape + [1, 1])
                }
                tensors[singleFilePrefixes[component]! + ldm] = t
            }
        }
        tensors["model_ema.decay"] = Tensor(shape: [], values: [0.9999])
        tensors["alphas_cumprod"] = Tensor(zeros: [1000])
        tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = Tensor(shape: [1, 77], values: (0..<77).map(Float.init))
        edit(&tensors)
        try SafeTensorsWriter.write(tensors, to: path)
    }

    /// Copies the diffusers folder to `path`, letting `edit` change each component's tensors
    /// (by component name) and `editConfig` its config.json object.
    public static func copyFolder(to path: String,
                                  edit: (String, inout [String: Tensor]) -> Void = { _, _ in },
                                  editConfig: (String, inout [String: Any]) -> Void = { _, _ in }) throws {
        let manager = FileManager.default
        try? manager.removeItem(atPath: path)
        try manager.copyItem(atPath: folder, toPath: path)
        for (component, relative) in weightFiles {
            let file = try SafeTensorsFile(path: folder + "/" + relative)
            var tensors: [String: Tensor] = [:]
            for name in file.names { tensors[name] = try file.tensor(name) }
            edit(component, &tensors)
            try manager.removeItem(atPath: path + "/" + relative)
            try SafeTensorsWriter.write(tensors, to: path + "/" + relative)
            let configPath = path + "/" + component + "/config.json"
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
            editConfig(component, &config)
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        }
    }
}

/// The random-weight model of the exact SD 1.5 architecture for opt-in full-size tests,
/// written by `tools/reference/make_sd15_model.py OUT_DIR` and named by `SDFLOW_SD15=OUT_DIR`.
public enum FullSizeModel {
    public static let folder = ProcessInfo.processInfo.environment["SDFLOW_SD15"]
    /// The random SDXL of `tools/reference/make_sdxl_model.py`.
    public static let sdxlFolder = ProcessInfo.processInfo.environment["SDFLOW_SDXL"]
}
