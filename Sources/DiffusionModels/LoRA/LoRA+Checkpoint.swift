import TensorCore

/// One low-rank change to a weight: W' = W + scale x (up @ down), reshaped to W's shape.
public struct LowRankDelta: Sendable {
    /// (out, rank[, 1, 1]) and (rank, in[, kh, kw]).
    public let up: Tensor, down: Tensor
    /// strength x alpha / rank.
    public let scale: Float

    /// `weight` with this change added: (out, in[, kh, kw]) -> same shape.
    func applied(to weight: Tensor) -> Tensor {
        let rank = down.shape[0]
        let delta = up.reshaped([up.shape[0], rank]).matmul(down.reshaped([rank, down.count / rank]))  // (out, in x kh x kw)
        let scale = self.scale
        return weight.broadcast(delta.reshaped(weight.shape)) { w, d in w + scale * d }
    }
}

/// The deltas of one model part by canonical parameter name (`ParameterStore` names).
public typealias WeightPatches = [String: [LowRankDelta]]

extension Checkpoint {
    /// The deltas `lora` makes to this checkpoint's UNet (at `unetStrength`) and text encoder (at
    /// `textStrength`), by canonical weight name. Every module must match a layer of the right
    /// shape; the first that does not is an error naming its key.
    public func patches(_ lora: LoRA, unetStrength: Float, textStrength: Float) throws -> (unet: WeightPatches, textEncoder: WeightPatches) {
        let names = LoRANames(checkpoint: self)
        var unet: WeightPatches = [:], text: WeightPatches = [:]
        for module in lora.modules {
            func fail(_ message: String) -> LoRA.LoadError { LoRA.LoadError(path: lora.path, message: "'\(module.key)' \(message)") }
            let store = module.component == .unet ? unetStore : textStore
            guard let name = names.canonical(module.key), store.contains(name) else {
                throw fail("matches no layer of the \(module.component.rawValue) of \(path)")
            }
            let shape = store.shape(name)!
            let (out, inputs) = (module.up.shape[0], module.down.count / module.down.shape[0])
            guard shape.first == out, shape.dropFirst().reduce(1, *) == inputs else {
                let family = [1024: " (a LoRA for SD 2.x?)", 1280: " (a LoRA for SDXL?)", 2048: " (a LoRA for SDXL?)"][inputs] ?? ""
                throw fail("changes a \(out)x\(inputs) weight, but '\(name)' is \(shape)\(family)")
            }
            let strength = module.component == .unet ? unetStrength : textStrength
            let delta = LowRankDelta(up: module.up, down: module.down, scale: strength * module.scale)
            if module.component == .unet { unet[name, default: []].append(delta) } else { text[name, default: []].append(delta) }
        }
        return (unet, text)
    }
}

/// Every spelling of a weight's module that LoRA files use, mapped to the canonical name.
struct LoRANames {
    private var byName: [String: String] = [:]

    init(checkpoint: Checkpoint) {
        // UNet: canonical names are LDM names; diffusers names come from the reverse of the key map.
        let ldmToDiffusers = DiffusersKeyMap(modules: Dictionary(DiffusersKeyMap.unet(checkpoint.configs.unet).modules.map { ($0.value, $0.key) },
                                                                 uniquingKeysWith: { a, b in min(a, b) }))
        for name in checkpoint.unetStore.names where name.hasSuffix(".weight") {
            let ldm = String(name.dropLast(".weight".count))
            byName["lora_unet_" + LoRANames.underscored(ldm)] = name
            if let diffusers = ldmToDiffusers.ldmName(ldm) {  // (a reversed map: its "LDM name" is the diffusers name)
                byName["lora_unet_" + LoRANames.underscored(diffusers)] = name
                byName["unet." + diffusers] = name
            }
        }
        // Text encoder: transformers names, with and without the `text_model.` level.
        for name in checkpoint.textStore.names where name.hasSuffix(".weight") {
            let module = String(name.dropLast(".weight".count))
            let short = module.hasPrefix("text_model.") ? String(module.dropFirst("text_model.".count)) : module
            for spelling in [module, short] {
                byName["lora_te_" + LoRANames.underscored(spelling)] = name
                byName["text_encoder." + spelling] = name
            }
        }
    }

    /// The canonical weight name of a LoRA module key, or nil.
    func canonical(_ key: String) -> String? {
        if let name = byName[key] { return name }
        // The old attention-processor format: `<attention>.processor.to_q`, `to_out` for `to_out.0`.
        if key.contains(".processor.") {
            var module = key.replacingOccurrences(of: ".processor.", with: ".")
            if module.hasSuffix(".to_out") { module += ".0" }
            return byName[module]
        }
        return nil
    }

    static func underscored(_ module: String) -> String { module.replacingOccurrences(of: ".", with: "_") }
}
