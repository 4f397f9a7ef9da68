import SafeTensors
import Sampling
import TensorCore

/// What a denoising pass starts from and how far it goes.
public struct DenoiseRequest {
    public var sampler: SamplerKind
    public var steps: Int
    public var spacing: TimestepSpacing?
    public var karras = false
    /// DDIM's eta and TCD's gamma (0 = deterministic).
    public var eta: Float = 0
    /// How much of the schedule runs on a given latent: 1 starts from noise, 0.6 keeps more of
    /// the image (diffusers' img2img `strength`). Ignored without a source latent.
    public var strength: Double = 1
    /// Stop after this many steps of the schedule (for chained passes); nil runs to the end.
    public var endStep: Int?
    /// Whether the source latent is noised to the starting level first. Off for a latent that a
    /// previous pass left noisy (chained passes).
    public var addNoise = true

    public init(sampler: SamplerKind, steps: Int) {
        self.sampler = sampler
        self.steps = steps
    }
}

/// Inpainting by latent blending, for any SD 1.x checkpoint: after every step the area outside
/// the mask is replaced by the original latent noised to the next step's level (the clean
/// original after the last step), so only the masked area is generated.
public struct LatentBlend {
    /// (1, 1, h, w) at latent size; 1 = generate.
    public let mask: Tensor
    /// The clean latents of the original image (1, 4, h, w), scaled.
    public let original: Tensor

    public init(mask: Tensor, original: Tensor) {
        self.mask = mask
        self.original = original
    }
}

/// Errors of a denoising pass.
public enum DenoiseError: Error, CustomStringConvertible {
    case cancelled
    case invalid(String)

    public var description: String {
        switch self {
        case .cancelled: return "cancelled"
        case .invalid(let message): return message
        }
    }
}

/// The guided denoising loop of diffusers' StableDiffusion, Img2Img and Inpaint pipelines.
public enum DenoiseLoop {
    /// The first step of an N-step schedule at `strength`, as diffusers' `get_timesteps`:
    /// N - min(int(N * strength), N).
    public static func startStep(steps: Int, strength: Double) -> Int {
        let run = Swift.min(Int(Double(steps) * strength), steps)
        return Swift.max(steps - run, 0)
    }

    /// Runs the loop and returns the final latents (N, 4, h, w).
    ///
    /// - `source`: scaled latents of an image for img2img/inpainting, or nil for text-to-image.
    /// - `noise`: the starting noise, the shape of the latents (also used to re-noise the
    ///   original in latent-blend inpainting, as diffusers does).
    /// - `stepNoise`: noise for the samplers that inject it at every step.
    /// - `blend`: latent-blend inpainting (4-channel models).
    /// - `progress(completed, total)` is called after every step; `isCancelled` before every step.
    /// - `observe(completed, total, denoised)`, when given, gets the clean latents predicted at each step
    ///   (x0 from the model's noise prediction), for live previews.
    public static func run(_ request: DenoiseRequest, denoiser: GuidedDenoiser, source: Tensor?, noise: Tensor,
                           stepNoise: NoiseSource, blend: LatentBlend? = nil,
                           progress: (Int, Int) -> Void = { _, _ in }, isCancelled: () -> Bool = { false },
                           observe: ((Int, Int, Tensor) -> Void)? = nil) throws -> Tensor {
        guard request.steps >= 1 else { throw DenoiseError.invalid("steps must be at least 1") }
        let strength = source == nil ? 1 : request.strength
        if request.sampler.schedulesStrength {
            let most = consistencyMaximumSteps(strength: strength)
            guard request.steps <= most else {
                throw DenoiseError.invalid("\(request.sampler.rawValue) runs at most \(most) steps at strength \(strength) "
                                           + "(its schedule has 50 x strength timesteps)")
            }
        }
        var sampler = request.sampler.make(steps: request.steps, spacing: request.spacing, karras: request.karras, eta: request.eta,
                                           strength: strength)
        let timesteps = sampler.timesteps
        let start = source == nil || request.sampler.schedulesStrength ? 0 : startStep(steps: timesteps.count, strength: strength)
        let end = Swift.min(request.endStep ?? timesteps.count, timesteps.count)
        guard start < end else {
            throw DenoiseError.invalid("nothing to do: strength \(request.strength) with \(request.steps) steps runs no step")
        }

        var x: Tensor
        if let source {
            guard source.shape == noise.shape else {
                throw DenoiseError.invalid("the noise \(noise.shape) does not match the latents \(source.shape)")
            }
            if !request.addNoise {
                x = source
            } else if (blend != nil || denoiser.inpaintingInputs != nil) && request.strength >= 1 {
                // The inpainting pipeline starts from pure noise at full strength.
                let scale = sampler.initialNoiseScale
                x = noise.map { $0 * scale }
            } else {
                x = sampler.addNoise(source, noise: noise, step: start)
            }
        } else {
            let scale = sampler.initialNoiseScale
            x = noise.map { $0 * scale }
        }

        // Lower the peak: the text encoder's and VAE's mapped weights, and the buffers their F16
        // weights were widened into, need not stay resident while the UNet runs (the UNet's own
        // weights fault back in at its first step, from the page cache).
        MappedFile.releaseResidentPages()
        BufferPool.trim()
        for i in start..<end {
            if isCancelled() { throw DenoiseError.cancelled }
            let input = sampler.modelInput(x, step: i)
            let eps = denoiser.noisePrediction(input, timestep: timesteps[i], step: i - start, of: timesteps.count - start)
            if eps.hasNonFinite {
                throw DenoiseError.invalid("the UNet's noise prediction has NaN or infinite values at step \(i - start + 1) of \(end - start) "
                                           + "(timestep \(timesteps[i])): the UNet weights (or the conditioning or latents fed to it) are damaged")
            }
            if let observe {
                // The model input is the variance-preserving latent of every sampler: x0 = (x - sqrt(1 - a) eps) / sqrt(a).
                let sigma = NoiseSchedule.sd15.sigma(atTimestep: Double(timesteps[i]))
                let a = Float(1 / (1 + sigma * sigma))
                let (sa, sb) = (a.squareRoot(), (1 - a).squareRoot())
                observe(i - start + 1, end - start, input.broadcast(eps) { x, e in (x - sb * e) / sa })
            }
            x = sampler.step(eps, at: i, sample: x, noise: stepNoise)
            if let blend {
                let proper = i < timesteps.count - 1 ? sampler.addNoise(blend.original, noise: noise, step: i + 1) : blend.original
                x = LatentBlend.apply(mask: blend.mask, kept: proper, generated: x)
            }
            progress(i - start + 1, end - start)
        }
        return x
    }
}

extension LatentBlend {
    /// (1 - m) * kept + m * generated, with the (1, 1, h, w) mask broadcast over channels.
    static func apply(mask: Tensor, kept: Tensor, generated: Tensor) -> Tensor {
        let keptPart = kept.broadcast(mask) { k, m in (1 - m) * k }
        let generatedPart = generated.broadcast(mask) { g, m in m * g }
        return keptPart + generatedPart
    }
}
