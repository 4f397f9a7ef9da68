import DiffusionModels
import TensorCore

/// The UNet with classifier-free guidance (Ho & Salimans 2022): the conditional and the
/// unconditional (negative-prompt) predictions come from one batched UNet call and are
/// combined as eps_u + scale * (eps_c - eps_u), as diffusers' pipelines do. With a scale of
/// 1 or less, only the conditional pass runs. LCM-distilled UNets take the guidance as an input
/// instead (diffusers' LatentConsistencyModelPipeline: w = scale - 1, embedded): one conditional
/// pass whatever the scale, and the negative prompt is not used.
public struct GuidedDenoiser {
    public let unet: UNet
    /// Text conditioning (1, 77 x chunks, C) of the prompt and of the negative prompt, repeated to
    /// the same number of tokens.
    public let positive: Tensor, negative: Tensor
    public let guidanceScale: Float
    /// For 9-channel inpainting UNets: the latent-size mask (1, 1, h, w) and the latents of the
    /// image with the masked area blanked (1, 4, h, w), concatenated to the UNet input.
    public let inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)?
    /// For latents bigger than a tile (in latent cells): the UNet runs on whole tiles of this size
    /// that overlap by at least `overlap`, and their predictions are averaged where they overlap
    /// (MultiDiffusion, Bar-Tal et al. 2023), every step; nil runs the whole latent at once.
    public let tiles: (size: Int, overlap: Int)?

    public init(unet: UNet, positive: Tensor, negative: Tensor, guidanceScale: Float,
                inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)? = nil, tiles: (size: Int, overlap: Int)? = nil) {
        self.unet = unet
        (self.positive, self.negative) = GuidedDenoiser.sameLength(positive, negative)
        self.guidanceScale = guidanceScale
        self.inpaintingInputs = inpaintingInputs
        self.tiles = tiles
    }

    /// Prompts of different lengths (chunk counts) share one batched UNet call once each is
    /// repeated along the token axis to their least common multiple (ComfyUI's rule). This is exact:
    /// attention over keys repeated k times gives the same output as over the keys once, so each
    /// prediction equals that of its prompt alone (A1111 runs such prompts in separate calls).
    /// When that multiple is more than 4 times the longer prompt, they stay as they are and
    /// `noisePrediction` runs one call for each.
    static func sameLength(_ a: Tensor, _ b: Tensor) -> (Tensor, Tensor) {
        let (m, n) = (a.shape[1], b.shape[1])
        guard m != n, m > 0, n > 0 else { return (a, b) }
        func gcd(_ x: Int, _ y: Int) -> Int { y == 0 ? x : gcd(y, x % y) }
        let lcm = m / gcd(m, n) * n
        guard lcm <= 4 * max(m, n) else { return (a, b) }
        func repeated(_ t: Tensor, _ times: Int) -> Tensor {
            times == 1 ? t : Tensor.concatenate(Array(repeating: t, count: times), axis: 1)  // (1, T, C) -> (1, T x times, C)
        }
        return (repeated(a, lcm / m), repeated(b, lcm / n))
    }

    /// Whether the unconditional pass runs.
    public var usesGuidance: Bool { guidanceScale > 1 && !embedsGuidance }

    /// Whether the UNet takes the guidance scale as an embedding (LCM-distilled).
    public var embedsGuidance: Bool { unet.config.guidanceEmbeddingDimension != nil }

    /// The guided noise prediction for a sample already scaled for the model: (N, 4, h, w) -> (N, 4, h, w).
    /// Averaging the tiles' noise predictions is averaging their steps: every sampler's step is
    /// affine in the prediction, and the noise a step adds is drawn once for the whole latent.
    public func noisePrediction(_ modelInput: Tensor, timestep: Float) -> Tensor {
        let (h, w) = (modelInput.shape[2], modelInput.shape[3])
        guard let tiles, h > tiles.size || w > tiles.size else { return prediction(modelInput, timestep: timestep, extra: inpaintingInputs) }
        let plan = TilePlan(height: h, width: w, tileSize: tiles.size, overlap: tiles.overlap, layout: .fitted)
        return plan.averaged(modelInput) { tile, rows, columns in
            let extra = inpaintingInputs.map {
                (mask: $0.mask.window(rows: rows, columns: columns), maskedImageLatents: $0.maskedImageLatents.window(rows: rows, columns: columns))
            }
            return prediction(tile, timestep: timestep, extra: extra)
        }
    }

    /// One guided prediction of a whole (N, 4, h, w) input, with the inpainting inputs of its area.
    private func prediction(_ modelInput: Tensor, timestep: Float, extra inpainting: (mask: Tensor, maskedImageLatents: Tensor)?) -> Tensor {
        let n = modelInput.shape[0]
        let cond = repeated(positive, n), uncond = repeated(negative, n)
        var input = usesGuidance ? Tensor.concatenate([modelInput, modelInput], axis: 0) : modelInput  // (2N, 4, h, w)
        if let extra = inpainting {
            let copies = input.shape[0]
            // [latents, mask, masked-image latents] -> (2N, 9, h, w)
            input = Tensor.concatenate([input, repeated(extra.mask, copies), repeated(extra.maskedImageLatents, copies)], axis: 1)
        }
        let eps: Tensor
        if !usesGuidance {
            eps = unet(input, timesteps: Array(repeating: timestep, count: n), context: cond,
                       guidance: embedsGuidance ? Array(repeating: guidanceScale - 1, count: n) : nil)
        } else if uncond.shape[1] == cond.shape[1] {
            eps = unet(input, timesteps: Array(repeating: timestep, count: 2 * n), context: Tensor.concatenate([uncond, cond], axis: 0))
        } else {  // prompts of lengths with no small common multiple: one call each
            let times = Array(repeating: timestep, count: n)
            eps = Tensor.concatenate([unet(input.slice(0..<n), timesteps: times, context: uncond),
                                      unet(input.slice(n..<(2 * n)), timesteps: times, context: cond)], axis: 0)
        }
        guard usesGuidance else { return eps }
        let scale = guidanceScale
        return eps.slice(0..<n).broadcast(eps.slice(n..<(2 * n))) { u, c in u + scale * (c - u) }
    }

    /// `t` repeated along the batch axis to `count` items (t has batch 1 or `count`).
    private func repeated(_ t: Tensor, _ count: Int) -> Tensor {
        if t.shape[0] == count { return t }
        precondition(t.shape[0] == 1, "cannot repeat a batch of \(t.shape[0]) to \(count)")
        return Tensor.concatenate(Array(repeating: t, count: count), axis: 0)
    }
}
