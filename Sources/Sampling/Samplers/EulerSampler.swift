import Foundation
import TensorCore

/// Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022, Algorithm 1
/// without churn). Matches diffusers' `EulerDiscreteScheduler` with SD 1.5's config: linear
/// interpolation of the training sigmas at (possibly fractional) timesteps, optional Karras
/// sigmas between the interpolated ends, a final sigma of 0. Leaves out: s_churn noise,
/// log-linear interpolation, exponential and beta sigmas.
public struct EulerSampler: Sampler {
    public let timesteps: [Float]
    /// N + 1 noise levels, the last 0.
    public let sigmas: [Float]
    public let initialNoiseScale: Float
    let schedule: NoiseSchedule

    public init(schedule: NoiseSchedule, steps: Int, spacing: TimestepSpacing, karras: Bool) {
        self.schedule = schedule
        let (timesteps, sigmas) = SigmaSchedule.euler(schedule, steps: steps, spacing: spacing, karras: karras)
        self.timesteps = timesteps
        self.sigmas = sigmas
        initialNoiseScale = SigmaSchedule.initialNoiseScale(sigmas, spacing: spacing)
    }

    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { SigmaSchedule.scaleInput(sample, sigma: sigmas[step]) }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let sigma = sigmas[i], dt = sigmas[i + 1] - sigma
        // x0 = x - sigma eps; d = (x - x0) / sigma; x' = x + d dt
        return x.zip(eps) { x, e in
            let x0 = x - sigma * e
            let d = (x - x0) / sigma
            return x + d * dt
        }
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        SigmaSchedule.addNoise(original, noise: noise, sigma: sigmas[step])
    }
}

/// The sigma schedules of the Euler-type samplers.
enum SigmaSchedule {
    /// diffusers' `EulerDiscreteScheduler.set_timesteps` (also Euler ancestral's, without Karras).
    static func euler(_ s: NoiseSchedule, steps n: Int, spacing: TimestepSpacing, karras: Bool) -> ([Float], [Float]) {
        let t = s.trainingSteps
        var timesteps: [Float]
        switch spacing {
        case .leading:
            timesteps = (0..<n).reversed().map { Float((Double($0 * (t / n))).rounded(.toNearestOrEven)) + 1 }
        case .trailing:
            timesteps = arangeDown(from: Double(t), by: Double(t) / Double(n)).map { Float($0.rounded(.toNearestOrEven)) - 1 }
        case .linspace:
            timesteps = linspace(0, Double(t - 1), n).reversed().map { Float($0) }
        }
        var sigmas = timesteps.map { s.sigma(atTimestep: Double($0)) }
        if karras, let last = sigmas.last, let first = sigmas.first {
            sigmas = NoiseSchedule.karrasSigmas(minimum: last, maximum: first, count: n)
            timesteps = sigmas.map { Float(s.timestep(forSigma: $0)) }
        }
        return (timesteps, sigmas.map(Float.init) + [0])
    }

    /// `init_noise_sigma`: the largest sigma, or sqrt(sigma_max^2 + 1) with leading spacing.
    static func initialNoiseScale(_ sigmas: [Float], spacing: TimestepSpacing) -> Float {
        let maximum = sigmas.max() ?? 1
        return spacing == .leading ? (maximum * maximum + 1).squareRoot() : maximum
    }

    /// `scale_model_input`: x / sqrt(sigma^2 + 1).
    static func scaleInput(_ x: Tensor, sigma: Float) -> Tensor {
        let scale = (sigma * sigma + 1).squareRoot()
        return x.map { $0 / scale }
    }

    /// x0 + noise * sigma.
    static func addNoise(_ original: Tensor, noise: Tensor, sigma: Float) -> Tensor {
        original.zip(noise) { x, n in x + n * sigma }
    }
}
