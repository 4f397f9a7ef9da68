import Foundation
import SafeTensors
import TensorCore

/// A LoRA file (low-rank weight deltas) for SD 1.x, in the layouts the community uses:
///
/// - kohya / AUTOMATIC1111: `lora_unet_<module with _>.lora_down.weight`, `.lora_up.weight`,
///   `.alpha`, and `lora_te_<text module with _>...` (SDXL: `lora_te1_`, `lora_te2_`); UNet modules named the diffusers way
///   (`lora_unet_down_blocks_0_attentions_0_...`) or the LDM way (`lora_unet_input_blocks_1_1_...`);
///   LoCon (4-D `lora_down` on convolutions) included;
/// - diffusers / peft: `unet.<module>.lora_A.weight` / `lora_B.weight`, `text_encoder.<module>...`
///   (with or without `text_model.`), alpha from `.alpha` tensors or the header's
///   `lora_adapter_metadata`; and the older `unet.<...>.processor.to_q_lora.down.weight`.
///
/// Each module's delta is strength x (alpha / rank) x up @ down (alpha missing: alpha = rank).
/// LoHa, LoKr and other LyCORIS kinds are refused by name; a LoRA for another model family is an
/// error naming the layer it does not fit.
public struct LoRA: Sendable {
    /// Which model a module patches.
    public enum Component: String, Sendable { case unet = "UNet", textEncoder = "text encoder", textEncoder2 = "second text encoder" }

    /// One module's low-rank pair.
    public struct Module: Sendable {
        /// The module name as the file spells it (without the `.lora_down.weight` part), for errors.
        public let key: String
        public let component: Component
        /// (out, rank) or (out, rank, 1, 1).
        public let up: Tensor
        /// (rank, in) or (rank, in, kh, kw).
        public let down: Tensor
        /// alpha / rank.
        public let scale: Float
    }

    public let path: String
    public let modules: [Module]

    /// Errors reading or applying a LoRA; each names the file and the key.
    public struct LoadError: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "LoRA \(path): \(message)" }
    }

    /// Reads `path`.
    public init(path: String) throws {
        func fail(_ message: String) -> LoadError { LoadError(path: path, message: message) }
        let file = try SafeTensorsFile.weights(path: path)
        self.path = path
        let peftAlphas = LoRA.peftAlphas(file.metadata["lora_adapter_metadata"])

        // Group the tensors by module: name -> (role -> tensor name).
        var groups: [String: [String: String]] = [:]
        for name in file.names {
            if let kind = LoRA.otherKinds.first(where: { name.contains($0.marker) })
                ?? (name.hasSuffix(".diff") || name.hasSuffix(".diff_b") ? (marker: ".diff", name: "full-difference (LyCORIS diff)") : nil) {
                throw fail("'\(name)' is a \(kind.name) tensor; only LoRA and LoCon are supported")
            }
            guard let (module, role) = LoRA.split(name) else {
                throw fail("'\(name)' is not a LoRA tensor name sdflow knows (lora_down/lora_up, lora_A/lora_B, alpha)")
            }
            groups[module, default: [:]][role] = name
        }
        var modules: [Module] = []
        for (module, roles) in groups.sorted(by: { $0.key < $1.key }) {
            guard let upName = roles["up"], let downName = roles["down"] else {
                if roles.keys.sorted() == ["alpha"] { continue }  // an alpha without weights patches nothing
                throw fail("module '\(module)' has \(roles.keys.sorted().joined(separator: ", ")) but not both up and down weights")
            }
            let up = try file.tensor(upName), down = try file.tensor(downName)
            let rank = down.shape.first ?? 0
            guard rank > 0, up.rank >= 2, down.rank >= 2, up.shape[1] == rank,
                  up.rank == 2 || up.shape.dropFirst(2).allSatisfy({ $0 == 1 }) else {
                throw fail("module '\(module)': up \(up.shape) and down \(down.shape) are not a low-rank pair")
            }
            let component: Component = module.hasPrefix("lora_te2_") || module.hasPrefix("text_encoder_2.") ? .textEncoder2
                : module.hasPrefix("lora_te") || module.hasPrefix("text_encoder.") ? .textEncoder : .unet
            var alpha = Float(rank)
            if let alphaName = roles["alpha"] {
                let a = try file.tensor(alphaName)
                guard a.count == 1, a.pointer[0].isFinite else { throw fail("'\(alphaName)' is not one finite number") }
                alpha = a.pointer[0]
            } else if let peft = peftAlphas[component] {
                alpha = peft
            }
            modules.append(Module(key: module, component: component, up: up, down: down, scale: alpha / Float(rank)))
        }
        guard !modules.isEmpty else { throw fail("it holds no LoRA weights") }
        self.modules = modules
    }

    /// LyCORIS and other kinds recognised by a tensor-name marker.
    static let otherKinds: [(marker: String, name: String)] = [
        (".hada_w1_a", "LoHa"), (".hada_w2_a", "LoHa"), (".lokr_w1", "LoKr"), (".lokr_w2", "LoKr"),
        (".lora_mid.", "LoCon with a Tucker core (lora_mid)"), (".dora_scale", "DoRA"), (".oft_", "OFT"), (".boft_", "BOFT"),
    ]

    /// A tensor name as (module, role): role "up", "down" or "alpha".
    static func split(_ name: String) -> (String, String)? {
        let suffixes: [(String, String)] = [
            (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".lora_A.weight", "down"), (".lora_B.weight", "up"),
            (".lora.down.weight", "down"), (".lora.up.weight", "up"), (".alpha", "alpha"),
            ("_lora.down.weight", "down"), ("_lora.up.weight", "up"),  // the old attention-processor format
        ]
        for (suffix, role) in suffixes where name.hasSuffix(suffix) {
            return (String(name.dropLast(suffix.count)), role)
        }
        return nil
    }

    /// peft's `lora_alpha` per component from the `lora_adapter_metadata` JSON that diffusers writes
    /// (`{"unet.lora_alpha": 8, ...}` or `{"unet": {"lora_alpha": 8, ...}}`).
    static func peftAlphas(_ json: String?) -> [Component: Float] {
        guard let json, let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] else { return [:] }
        var result: [Component: Float] = [:]
        for (prefix, component) in [("unet", Component.unet), ("text_encoder", .textEncoder), ("text_encoder_2", .textEncoder2)] {
            let nested = (object[prefix] as? [String: Any])?["lora_alpha"]
            if let value = (nested ?? object[prefix + ".lora_alpha"]) as? NSNumber { result[component] = value.floatValue }
        }
        return result
    }
}
