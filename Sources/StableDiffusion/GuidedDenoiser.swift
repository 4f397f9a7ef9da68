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
    /// ControlNets whose residuals are added to every UNet call in their part of the steps,
    /// summed (diffusers' MultiControlNetModel).
    public let controls: [ControlGuide]
    /// SDXL: the pooled text and time ids of the prompt and of the negative prompt (batch 1 each).
    public let added: (positive: AddedConditions, negative: AddedConditions)?

    public init(unet: UNet, positive: Tensor, negative: Tensor, guidanceScale: Float,
                inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)? = nil, tiles: (size: Int, overlap: Int)? = nil,
                controls: [ControlGuide] = [], added: (positive: AddedConditions, negative: AddedConditions)? = nil) {
        self.unet = unet
        (self.positive, self.negative) = GuidedDenoiser.sameLength(positive, negative)
        self.guidanceScale = guidanceScale
        self.inpaintingInputs = inpaintingInputs
        self.tiles = tiles
        self.controls = controls
        self.added = added
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

    /// The guided noise prediction for a sample already scaled for the model: (N, 4, h, w) -> (N, 4, h, w),
    /// at step `step` of the `steps` the pass runs (which ControlNets are active depends on it).
    /// Averaging the tiles' noise predictions is averaging their steps: every sampler's step is
    /// affine in the prediction, and the noise a step adds is drawn once for the whole latent.
    public func noisePrediction(_ modelInput: Tensor, timestep: Float, step: Int = 0, of steps: Int = 1) -> Tensor {
        let (h, w) = (modelInput.shape[2], modelInput.shape[3])
        let active = controls.filter { $0.isActive(step: step, of: steps) }
        guard let tiles, h > tiles.size || w > tiles.size else {
            return prediction(modelInput, timestep: timestep, extra: inpaintingInputs, controls: active.map { ($0, $0.hint) })
        }
        let plan = TilePlan(height: h, width: w, tileSize: tiles.size, overlap: tiles.overlap, layout: .fitted)
        return plan.averaged(modelInput) { tile, rows, columns in
            let extra = inpaintingInputs.map {
                (mask: $0.mask.window(rows: rows, columns: columns), maskedImageLatents: $0.maskedImageLatents.window(rows: rows, columns: columns))
            }
            // Each net sees its control image's part under the tile.
            let hints = active.map { guide in
                let f = guide.net.config.hintFactor
                return (guide, guide.hint.window(rows: (rows.lowerBound * f)..<(rows.upperBound * f),
                                                 columns: (columns.lowerBound * f)..<(columns.upperBound * f)))
            }
            return prediction(tile, timestep: timestep, extra: extra, controls: hints)
        }
    }

    /// One guided prediction of a whole (N, 4, h, w) input, with the inpainting inputs and the
    /// control images of its area.
    private func prediction(_ modelInput: Tensor, timestep: Float, extra inpainting: (mask: Tensor, maskedImageLatents: Tensor)?,
                            controls: [(guide: ControlGuide, hint: Tensor)]) -> Tensor {
        let n = modelInput.shape[0]
        let cond = positive.repeatedBatch(n), uncond = negative.repeatedBatch(n)
        let latents = usesGuidance ? Tensor.concatenate([modelInput, modelInput], axis: 0) : modelInput  // (2N, 4, h, w)
        var input = latents
        /// The summed residuals for a UNet call on `latents` with `context` whose first `unconditional` items are the negative prompt's.
        func control(_ latents: Tensor, _ context: Tensor, unconditional: Int) -> ControlResiduals? {
            controls.compactMap { $0.guide.residuals(latents, timestep: timestep, context: context, hint: $0.hint, unconditional: unconditional) }
                .reduce(nil) { sum, next in sum.map { $0 + next } ?? next }
        }
        if let extra = inpainting {
            let copies = input.shape[0]
            // [latents, mask, masked-image latents] -> (2N, 9, h, w)
            input = Tensor.concatenate([input, extra.mask.repeatedBatch(copies), extra.maskedImageLatents.repeatedBatch(copies)], axis: 1)
        }
        // SDXL's pooled text and time ids, repeated to n items per prompt.
        let addedCond = added?.positive.repeatedBatch(n), addedUncond = added?.negative.repeatedBatch(n)
        let eps: Tensor
        if !usesGuidance {
            eps = unet(input, timesteps: Array(repeating: timestep, count: n), context: cond,
                       guidance: embedsGuidance ? Array(repeating: guidanceScale - 1, count: n) : nil,
                       control: control(latents, cond, unconditional: 0), added: addedCond)
        } else if uncond.shape[1] == cond.shape[1] {
            let context = Tensor.concatenate([uncond, cond], axis: 0)
            eps = unet(input, timesteps: Array(repeating: timestep, count: 2 * n), context: context,
                       control: control(latents, context, unconditional: n),
                       added: addedUncond.flatMap { u in addedCond.map { u.followed(by: $0) } })
        } else {  // prompts of lengths with no small common multiple: one call each
            let times = Array(repeating: timestep, count: n)
            let (u, c) = (latents.slice(0..<n), latents.slice(n..<(2 * n)))
            eps = Tensor.concatenate([unet(input.slice(0..<n), timesteps: times, context: uncond, control: control(u, uncond, unconditional: n),
                                           added: addedUncond),
                                      unet(input.slice(n..<(2 * n)), timesteps: times, context: cond, control: control(c, cond, unconditional: 0),
                                           added: addedCond)],
                                     axis: 0)
        }
        guard usesGuidance else { return eps }
        let scale = guidanceScale
        return eps.slice(0..<n).broadcast(eps.slice(n..<(2 * n))) { u, c in u + scale * (c - u) }
    }
}

/// One ControlNet's part in a denoising pass: the net, its control image, how strongly and in
/// which part of the steps it guides (diffusers' `controlnet_conditioning_scale`,
/// `control_guidance_start`/`_end`, `guess_mode`).
public struct ControlGuide: Sendable {
    public let net: ControlNet
    /// The control image (1, channels, H, W), the latent's size times the net's factor, in [0, 1]
    /// (an inpaint net's masked pixels at -1).
    public let hint: Tensor
    public let scale: Float
    /// The fractions of the steps where the net starts and stops guiding.
    public let start: Double, end: Double
    /// The net sees only the prompt's half of a guided batch (the negative's gets no residuals),
    /// and its residuals are scaled from 0.1 (first skip) to 1 (middle): A1111's "ControlNet is
    /// more important".
    public let guessMode: Bool

    public init(net: ControlNet, hint: Tensor, scale: Float, start: Double = 0, end: Double = 1, guessMode: Bool = false) {
        (self.net, self.hint, self.scale, self.start, self.end, self.guessMode) = (net, hint, scale, start, end, guessMode)
    }

    /// Whether it guides step `i` of `n`, as diffusers decides: not when i/n < start or (i+1)/n > end.
    public func isActive(step i: Int, of n: Int) -> Bool {
        !(Double(i) / Double(n) < start || Double(i + 1) / Double(n) > end)
    }

    /// Its residuals for a UNet call on `latents` (B, 4, h, w) with `context` (B, S, D), whose
    /// first `unconditional` items are the negative prompt's; nil when guess mode gives none.
    func residuals(_ latents: Tensor, timestep: Float, context: Tensor, hint: Tensor, unconditional: Int) -> ControlResiduals? {
        let b = latents.shape[0]
        guard guessMode && unconditional > 0 else {
            return net(latents, timesteps: Array(repeating: timestep, count: b), context: context, hint: hint.repeatedBatch(b),
                       scale: scale, guessMode: guessMode)
        }
        let conditional = b - unconditional
        guard conditional > 0 else { return nil }
        let r = net(latents.slice(unconditional..<b), timesteps: Array(repeating: timestep, count: conditional),
                    context: context.slice(unconditional..<b), hint: hint.repeatedBatch(conditional), scale: scale, guessMode: true)
        // The negative prompt's half gets zeros.
        func padded(_ t: Tensor) -> Tensor { Tensor.concatenate([Tensor(zeros: [unconditional] + t.shape.dropFirst()), t], axis: 0) }
        return ControlResiduals(down: r.down.map(padded), middle: padded(r.middle))
    }
}

extension AddedConditions {
    /// Batch-1 conditions repeated to `count` items.
    func repeatedBatch(_ count: Int) -> AddedConditions {
        AddedConditions(pooled: pooled.repeatedBatch(count), timeIds: timeIds.repeatedBatch(count))
    }

    /// These items, then `other`'s (the negative prompt's half of a guided batch, then the prompt's).
    func followed(by other: AddedConditions) -> AddedConditions {
        AddedConditions(pooled: Tensor.concatenate([pooled, other.pooled], axis: 0), timeIds: Tensor.concatenate([timeIds, other.timeIds], axis: 0))
    }
}

extension Tensor {
    /// A batch-1 tensor repeated to `count` items along the first axis.
    func repeatedBatch(_ count: Int) -> Tensor {
        if shape[0] == count { return self }
        precondition(shape[0] == 1, "cannot repeat a batch of \(shape[0]) to \(count)")
        return Tensor.concatenate(Array(repeating: self, count: count), axis: 0)
    }
}
