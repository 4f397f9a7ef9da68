import DiffusionModels
import TensorCore

/// The UNet with classifier-free guidance (Ho & Salimans 2022): the conditional and the
/// unconditional (negative-prompt) predictions come from one batched UNet call and are
/// combined as eps_u + scale * (eps_c - eps_u), as diffusers' pipelines do. With a scale of
/// 1 or less, only the conditional pass runs.
public struct GuidedDenoiser {
    public let unet: UNet
    /// Text conditioning (1, 77, C) of the prompt and of the negative prompt.
    public let positive: Tensor, negative: Tensor
    public let guidanceScale: Float
    /// For 9-channel inpainting UNets: the latent-size mask (1, 1, h, w) and the latents of the
    /// image with the masked area blanked (1, 4, h, w), concatenated to the UNet input.
    public let inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)?

    public init(unet: UNet, positive: Tensor, negative: Tensor, guidanceScale: Float,
                inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)? = nil) {
        self.unet = unet
        self.positive = positive
        self.negative = negative
        self.guidanceScale = guidanceScale
        self.inpaintingInputs = inpaintingInputs
    }

    /// Whether the unconditional pass runs.
    public var usesGuidance: Bool { guidanceScale > 1 }

    /// The guided noise prediction for a sample already scaled for the model: (N, 4, h, w) -> (N, 4, h, w).
    public func noisePrediction(_ modelInput: Tensor, timestep: Float) -> Tensor {
        let n = modelInput.shape[0]
        let cond = repeated(positive, n), uncond = repeated(negative, n)
        var input = usesGuidance ? Tensor.concatenate([modelInput, modelInput], axis: 0) : modelInput  // (2N, 4, h, w)
        if let extra = inpaintingInputs {
            let copies = input.shape[0]
            // [latents, mask, masked-image latents] -> (2N, 9, h, w)
            input = Tensor.concatenate([input, repeated(extra.mask, copies), repeated(extra.maskedImageLatents, copies)], axis: 1)
        }
        let context = usesGuidance ? Tensor.concatenate([uncond, cond], axis: 0) : cond
        let eps = unet(input, timesteps: Array(repeating: timestep, count: input.shape[0]), context: context)
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
