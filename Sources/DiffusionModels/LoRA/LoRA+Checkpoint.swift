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
    /// The deltas `lora` makes to this checkpoint's UNet (at `unetStrength`) and text encoders (at
    /// `textStrength`; SDXL's second one too), by canonical weight name. Every module must match a
    /// layer of the right shape; the first that does not is an error naming its key.
    public func patches(_ lora: LoRA, unetStrength: Float, textStrength: Float)
        throws -> (unet: WeightPatches, textEncoder: WeightPatches, textEncoder2: WeightPatches) {
        // The family a LoRA is for shows in its text-encoder modules: SDXL's have a second encoder
        // (lora_te2_, text_encoder_2.) and name the first lora_te1_.
        let forSDXL = lora.modules.contains { $0.component == .textEncoder2 || $0.key.hasPrefix("lora_te1_") }
        let hasText = lora.modules.contains { $0.component != .unet }
        if hasText && forSDXL != isSDXL {
            throw LoRA.LoadError(path: lora.path, message: forSDXL ? "an SDXL LoRA (it changes SDXL's two text encoders), and \(path) is an SD 1.x checkpoint"
                                                                  : "an SD 1.x LoRA (one text encoder), and \(path) is an SDXL checkpoint")
        }
        let names = LoRANames(checkpoint: self)
        var patches: [LoRA.Component: WeightPatches] = [:]
        for module in lora.modules {
            func fail(_ message: String) -> LoRA.LoadError { LoRA.LoadError(path: lora.path, message: "'\(module.key)' \(message)") }
            let store: ParameterStore
            switch module.component {
            case .unet: store = unetStore
            case .textEncoder: store = textStore
            case .textEncoder2:
                guard let textStore2 else { throw fail("changes SDXL's second text encoder, which \(path) does not have") }
                store = textStore2
            }
            guard let name = names.canonical(module.key, module.component), store.contains(name) else {
                throw fail("matches no layer of the \(module.component.rawValue) of \(path)" + (isSDXL ? " (a LoRA for SD 1.x?)" : ""))
            }
            let shape = store.shape(name)!
            let (out, inputs) = (module.up.shape[0], module.down.count / module.down.shape[0])
            guard shape.first == out, shape.dropFirst().reduce(1, *) == inputs else {
                let family = [768: isSDXL ? " (a LoRA for SD 1.x?)" : "", 1024: " (a LoRA for SD 2.x?)",
                              1280: isSDXL ? "" : " (a LoRA for SDXL?)", 2048: isSDXL ? "" : " (a LoRA for SDXL?)"][inputs] ?? ""
                throw fail("changes a \(out)x\(inputs) weight, but '\(name)' is \(shape)\(family)")
            }
            let strength = module.component == .unet ? unetStrength : textStrength
            patches[module.component, default: [:]][name, default: []].append(LowRankDelta(up: module.up, down: module.down, scale: strength * module.scale))
        }
        return (patches[.unet] ?? [:], patches[.textEncoder] ?? [:], patches[.textEncoder2] ?? [:])
    }
}

/// Every spelling of a weight's module that LoRA files use, mapped to the canonical name (per
/// part: both text encoders use the same names).
struct LoRANames {
    private var byName: [String: String] = [:]
    private var secondText: [String: String] = [:]

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
        // Text encoders: transformers names, with and without the `text_model.` level (SDXL's first
        // one also as lora_te1_, its second as lora_te2_ and text_encoder_2.).
        for name in checkpoint.textStore.names where name.hasSuffix(".weight") {
            for spelling in LoRANames.spellings(name) {
                byName["lora_te_" + LoRANames.underscored(spelling)] = name
                byName["lora_te1_" + LoRANames.underscored(spelling)] = name
                byName["text_encoder." + spelling] = name
            }
        }
        for name in checkpoint.textStore2?.names ?? [] where name.hasSuffix(".weight") {
            for spelling in LoRANames.spellings(name) {
                secondText["lora_te2_" + LoRANames.underscored(spelling)] = name
                secondText["text_encoder_2." + spelling] = name
            }
        }
    }

    /// A text-encoder weight's module, with and without the `text_model.` level.
    static func spellings(_ name: String) -> [String] {
        let module = String(name.dropLast(".weight".count))
        return module.hasPrefix("text_model.") ? [module, String(module.dropFirst("text_model.".count))] : [module]
    }

    /// The canonical weight name of a LoRA module key of `component`, or nil.
    func canonical(_ key: String, _ component: LoRA.Component) -> String? {
        if component == .textEncoder2 { return secondText[key] }
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
