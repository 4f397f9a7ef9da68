import Foundation
import TensorCore

/// Euler ancestral: an Euler step down to sigma_down, then fresh noise of sigma_up, so that
/// sigma_down^2 + sigma_up^2 = sigma_next^2 (k-diffusion's `sample_euler_ancestral` with eta 1).
/// Matches diffusers' `EulerAncestralDiscreteScheduler`, which draws noise on every step,
/// the last included (where sigma_up is 0). Leaves out: eta other than 1 (diffusers has none).
public struct EulerAncestralSampler: Sampler {
    public let timesteps: [Float]
    public let sigmas: [Float]
    public let initialNoiseScale: Float

    public init(schedule: NoiseSchedule, steps: Int, spacing: TimestepSpacing) {
        (timesteps, sigmas) = SigmaSchedule.euler(schedule, steps: steps, spacing: spacing, karras: false)
        initialNoiseScale = SigmaSchedule.initialNoiseScale(sigmas, spacing: spacing)
    }

    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { SigmaSchedule.scaleInput(sample, sigma: sigmas[step]) }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let from = sigmas[i], to = sigmas[i + 1]
        let up = ((to * to * (from * from - to * to)) / (from * from)).squareRoot()
        let down = (to * to - up * up).squareRoot()
        let dt = down - from
        let moved = x.zip(eps) { x, e in
            let x0 = x - from * e
            let d = (x - x0) / from
            return x + d * dt
        }
        let z = noise.randn(eps.shape)
        return moved.zip(z) { p, z in p + z * up }
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        SigmaSchedule.addNoise(original, noise: noise, sigma: sigmas[step])
    }
}
