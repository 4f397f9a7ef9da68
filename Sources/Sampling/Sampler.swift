import TensorCore

/// A source of Gaussian noise for samplers that inject it (DDPM, DDIM with eta > 0, Euler
/// ancestral): a seeded `TorchGenerator`, or noise given from outside.
public protocol NoiseSource: AnyObject {
    /// A standard normal tensor of `shape`.
    func randn(_ shape: [Int]) -> Tensor
}

extension TorchGenerator: NoiseSource {}

/// Noise supplied by the caller, handed out in order (to compare runs with other tools).
public final class RecordedNoise: NoiseSource {
    private var tensors: [Tensor]

    public init(_ tensors: [Tensor]) { self.tensors = tensors }

    public func randn(_ shape: [Int]) -> Tensor {
        precondition(!tensors.isEmpty, "RecordedNoise: no noise left for a draw of \(shape)")
        let next = tensors.removeFirst()
        precondition(next.shape == shape, "RecordedNoise: next tensor is \(next.shape), the sampler needs \(shape)")
        return next
    }
}

/// A sampler: a timestep and noise-level schedule and an update rule, each matching one
/// diffusers scheduler step by step (see the sampler files for what each matches and leaves out).
///
/// A loop over `timesteps` is: model input = `modelInput(x, step: i)`; eps = the model's noise
/// prediction at `timesteps[i]`; `x = step(eps, at: i, sample: x, noise:)`. Samplers keep
/// state between steps (multistep methods), so use each instance for one loop.
public protocol Sampler {
    /// The timesteps the model is evaluated at, in order.
    var timesteps: [Float] { get }
    /// The standard deviation of the starting noise for text-to-image (`init_noise_sigma`).
    var initialNoiseScale: Float { get }
    /// Scales the sample for the model (`scale_model_input`).
    func modelInput(_ sample: Tensor, step: Int) -> Tensor
    /// One update from the model's noise prediction at step `step`.
    mutating func step(_ noisePrediction: Tensor, at step: Int, sample: Tensor, noise: NoiseSource) -> Tensor
    /// A clean latent noised to the level at which step `step` evaluates the model (`add_noise`).
    func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor
}

/// The samplers sdflow offers, by the names workflows use.
public enum SamplerKind: String, Sendable, CaseIterable {
    case ddpm, ddim, euler
    case eulerAncestral = "euler_a"
    case dpmPlusPlus2M = "dpmpp_2m"
    /// Few-step samplers for consistency-distilled models (LCM-LoRA, TCD-LoRA, LCM checkpoints).
    case lcm, tcd

    /// The spacing diffusers uses for SD 1.5 when its config names none.
    public var defaultSpacing: TimestepSpacing {
        switch self {
        case .ddpm, .ddim: return .leading
        case .euler, .eulerAncestral, .dpmPlusPlus2M, .lcm, .tcd: return .linspace
        }
    }

    /// Whether the sampler has its own fixed schedule, which img2img's strength shortens instead of
    /// skipping steps (LCM and TCD: every requested step runs); spacing and Karras do not apply.
    public var schedulesStrength: Bool { self == .lcm || self == .tcd }

    /// Whether diffusers offers Karras sigmas for this sampler.
    public var supportsKarras: Bool { self == .euler || self == .dpmPlusPlus2M }

    /// A sampler for `steps` steps; `eta` is DDIM's eta and TCD's gamma; `strength` is img2img's
    /// for the samplers that schedule it (`schedulesStrength`), and ignored by the others.
    public func make(steps: Int, spacing: TimestepSpacing? = nil, karras: Bool = false, eta: Float = 0,
                     strength: Double = 1, schedule: NoiseSchedule = .sd15) -> Sampler {
        let spacing = spacing ?? defaultSpacing
        switch self {
        case .ddpm: return DDPMSampler(schedule: schedule, steps: steps, spacing: spacing)
        case .ddim: return DDIMSampler(schedule: schedule, steps: steps, spacing: spacing, eta: eta)
        case .euler: return EulerSampler(schedule: schedule, steps: steps, spacing: spacing, karras: karras)
        case .eulerAncestral: return EulerAncestralSampler(schedule: schedule, steps: steps, spacing: spacing)
        case .dpmPlusPlus2M: return DPMSolverPlusPlus2MSampler(schedule: schedule, steps: steps, spacing: spacing, karras: karras)
        case .lcm: return LCMSampler(schedule: schedule, steps: steps, strength: strength)
        case .tcd: return TCDSampler(schedule: schedule, steps: steps, gamma: eta, strength: strength)
        }
    }
}

// MARK: - Element-wise helpers

extension Tensor {
    /// `f(self[i], other[i])` for tensors of the same shape.
    func zip(_ other: Tensor, _ f: @escaping (Float, Float) -> Float) -> Tensor {
        precondition(shape == other.shape, "sampler: shapes \(shape) and \(other.shape) differ")
        return broadcast(other, f)
    }
}
