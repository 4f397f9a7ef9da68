import Foundation
import SafeTensors

/// A diffusers pipeline folder: `unet/`, `vae/` and `text_encoder/` with `config.json` and
/// safetensors weights, and optionally `tokenizer/`. Parameters are renamed to their LDM
/// names with `DiffusersKeyMap`, so the models are built by the same code for both layouts.
struct DiffusersFolder {
    let path: String
    let unet: ParameterStore
    let vae: ParameterStore
    let textEncoder: ParameterStore
    /// SDXL's second text encoder (`text_encoder_2/`, CLIPTextModelWithProjection).
    let textEncoder2: ParameterStore?
    let tokenizerFolder: String?

    init(path: String) throws {
        self.path = path
        let manager = FileManager.default
        if !manager.fileExists(atPath: path + "/text_encoder/config.json") && manager.fileExists(atPath: path + "/text_encoder_2/config.json") {
            throw CheckpointError.unsupportedModel(path: path, reason: "the SDXL refiner (text_encoder_2/ only); sdflow runs SDXL base models")
        }
        for part in ["unet", "vae", "text_encoder"] where !manager.fileExists(atPath: path + "/" + part + "/config.json") {
            throw CheckpointError.notACheckpoint(path: path, reason: "a diffusers folder needs \(part)/config.json")
        }
        try DiffusersFolder.refuseOtherFamilies(path)
        let unetConfig = try UNet.Config.diffusers(configPath: path + "/unet/config.json")
        let vaeConfig = try AutoencoderKL.Config.diffusers(configPath: path + "/vae/config.json")
        unet = try DiffusersFolder.store("UNet", folder: path + "/unet", weights: "diffusion_pytorch_model",
                                         map: .unet(unetConfig), ignoring: [])
        vae = try DiffusersFolder.store("VAE", folder: path + "/vae", weights: "diffusion_pytorch_model",
                                        map: .vae(vaeConfig), ignoring: [])
        textEncoder = try DiffusersFolder.store("text encoder", folder: path + "/text_encoder", weights: "model",
                                                map: .textEncoder, ignoring: Checkpoint.ignoredTextKeys)
        let hasSecond = manager.fileExists(atPath: path + "/text_encoder_2/config.json")
        if unetConfig.addition != nil {
            guard hasSecond else {
                throw CheckpointError.unsupportedModel(path: path, reason: "an SDXL UNet without text_encoder_2/ (the SDXL refiner? sdflow runs SDXL base models)")
            }
            textEncoder2 = try DiffusersFolder.store("text encoder 2", folder: path + "/text_encoder_2", weights: "model",
                                                     map: .textEncoder, ignoring: Checkpoint.ignoredTextKeys)
        } else {
            textEncoder2 = nil
        }
        let tokenizer = path + "/tokenizer"
        tokenizerFolder = BPEVocabulary.isTokenizerFolder(tokenizer) ? tokenizer : nil
    }

    /// SD 2.x and v-prediction folders are refused by name: their weights have the same names as
    /// SD 1.x's and would otherwise load (SD 2.x's 1024-wide context, linear projections).
    static func refuseOtherFamilies(_ path: String) throws {
        func json(_ file: String) -> [String: Any] {
            FileManager.default.contents(atPath: path + "/" + file)
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        }
        func refuse(_ file: String, _ what: String) -> CheckpointError {
            .unsupportedModel(path: path + "/" + file, reason: what + "; sdflow runs SD 1.x and SDXL base models (epsilon prediction)")
        }
        let unet = json("unet/config.json")
        let context = unet["cross_attention_dim"] as? Int
        let sdxl = unet["addition_embed_type"] as? String == "text_time"
        if unet["projection_class_embeddings_input_dim"] as? Int == 2560 {
            throw refuse("unet/config.json", "the SDXL refiner (aesthetic-score conditioning)")
        }
        if !sdxl && (context == 1024 || unet["use_linear_projection"] as? Bool == true) {
            throw refuse("unet/config.json", "an SD 2.x UNet (" + (context == 1024 ? "1024-wide text context" : "linear attention projections") + ")")
        }
        if json("text_encoder/config.json")["hidden_size"] as? Int == 1024 {
            throw refuse("text_encoder/config.json", "an SD 2.x text encoder (OpenCLIP ViT-H, 1024 wide)")
        }
        if let prediction = json("scheduler/scheduler_config.json")["prediction_type"] as? String, prediction != "epsilon" {
            throw refuse("scheduler/scheduler_config.json", "a \(prediction)-prediction model")
        }
    }

    func configs() throws -> Checkpoint.Configs {
        var configs = Checkpoint.Configs(unet: try .diffusers(configPath: path + "/unet/config.json"),
                                         vae: try .diffusers(configPath: path + "/vae/config.json"),
                                         textEncoder: try .transformers(configPath: path + "/text_encoder/config.json"))
        if let textEncoder2 {
            var config = try CLIPTextEncoder.Config.transformers(configPath: path + "/text_encoder_2/config.json")
            config.projectionWidth = textEncoder2.shape("text_projection.weight")?.first
            configs.textEncoder2 = config
        }
        return configs
    }

    /// The weight files of one component: `<name>.safetensors`, else `<name>.fp16.safetensors`,
    /// else the shards listed in `<name>[.fp16].safetensors.index.json`, else `<name>[.fp16].bin`.
    static func weightFiles(folder: String, name: String) throws -> [SafeTensorsFile] {
        let manager = FileManager.default
        for variant in ["", ".fp16"] {
            let single = "\(folder)/\(name)\(variant).safetensors"
            if manager.fileExists(atPath: single) { return [try SafeTensorsFile(path: single)] }
            let index = single + ".index.json"
            if manager.fileExists(atPath: index) {
                guard let data = manager.contents(atPath: index),
                      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                      let map = object["weight_map"] as? [String: String] else {
                    throw CheckpointError.notACheckpoint(path: index, reason: "not a safetensors index (no weight_map)")
                }
                return try Set(map.values).sorted().map { try SafeTensorsFile(path: folder + "/" + $0) }
            }
        }
        // Older folders hold pickled weights, read by the restricted unpickler (no code in them runs).
        if let bin = ["\(name).bin", "\(name).fp16.bin"].first(where: { manager.fileExists(atPath: folder + "/" + $0) }) {
            return [try SafeTensorsFile.weights(path: folder + "/" + bin)]
        }
        throw CheckpointError.notACheckpoint(path: folder, reason: "no \(name).safetensors (or .fp16.safetensors, or .bin) weights")
    }

    /// For a model kept apart from a checkpoint: the folder holding its config.json when `path` is a
    /// folder (its `subfolder` in a pipeline folder, else `path` itself), nil when `path` is a file.
    /// A missing path, or a folder without config.json, is an error saying what it needed (`needs`).
    static func componentFolder(_ path: String, subfolder: String, needs: String) throws -> String? {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw CheckpointError.notACheckpoint(path: path, reason: "no such file or folder")
        }
        guard isFolder.boolValue else { return nil }
        let folder = FileManager.default.fileExists(atPath: path + "/\(subfolder)/config.json") ? path + "/" + subfolder : path
        guard FileManager.default.fileExists(atPath: folder + "/config.json") else {
            throw CheckpointError.notACheckpoint(path: path, reason: needs)
        }
        return folder
    }

    static func store(_ component: String, folder: String, weights: String, map: DiffusersKeyMap,
                      ignoring ignored: [String]) throws -> ParameterStore {
        var locations: [String: ParameterStore.Location] = [:]
        for file in try weightFiles(folder: folder, name: weights) {
            for key in file.names {
                if ignored.contains(key) { continue }
                guard let ldm = map.ldmName(key) else {
                    throw CheckpointError.unexpectedTensor(component: component, name: key, file: file.path, count: 1)
                }
                if let previous = locations[ldm] {
                    throw CheckpointError.notACheckpoint(path: file.path, reason: "'\(key)' duplicates '\(previous.key)' in \(previous.file.path)")
                }
                locations[ldm] = ParameterStore.Location(file: file, key: key)
            }
        }
        return ParameterStore(component: component, locations: locations)
    }
}
