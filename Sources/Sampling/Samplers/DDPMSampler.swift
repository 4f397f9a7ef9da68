import Foundation
import TensorCore

/// DDPM ancestral sampling (Ho et al. 2020, eq. 7). Matches diffusers' `DDPMScheduler` with
/// SD 1.5's config (epsilon prediction, `fixed_small` variance, no clipping), including its
/// noise draw on every step with t > 0. Leaves out: thresholding, learned variances.
public struct DDPMSampler: Sampler {
    let schedule: NoiseSchedule
    let steps: [Int]

    public init(schedule: NoiseSchedule, steps count: Int, spacing: TimestepSpacing) {
        self.schedule = schedule
        steps = schedule.integerTimesteps(count, spacing: spacing)
    }

    public var timesteps: [Float] { steps.map(Float.init) }
    public var initialNoiseScale: Float { 1 }
    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let t = steps[i], previous = i + 1 < steps.count ? steps[i + 1] : -1
        let a = schedule.alphaCumprod(t), ap: Float = previous >= 0 ? schedule.alphaCumprod(previous) : 1
        let b = 1 - a, bp = 1 - ap, ca = a / ap, cb = 1 - ca
        let sb = b.squareRoot(), sa = a.squareRoot()
        let c0 = (ap.squareRoot() * cb) / b, c1 = ca.squareRoot() * bp / b
        // x0 = (x - sqrt(1 - a) eps) / sqrt(a); mean = c0 x0 + c1 x
        var previousSample = x.zip(eps) { x, e in
            let x0 = (x - sb * e) / sa
            return c0 * x0 + c1 * x
        }
        if t > 0 {
            let z = noise.randn(eps.shape)
            let sd = Swift.max((1 - ap) / (1 - a) * cb, 1e-20).squareRoot()
            previousSample = previousSample.zip(z) { p, z in p + sd * z }
        }
        return previousSample
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        VariancePreserving.addNoise(original, noise: noise, alphaCumprod: schedule.alphaCumprod(steps[step]))
    }
}

/// sqrt(a) x0 + sqrt(1 - a) noise: the forward process at one timestep (DDPM and DDIM).
enum VariancePreserving {
    static func addNoise(_ original: Tensor, noise: Tensor, alphaCumprod a: Float) -> Tensor {
        let sa = a.squareRoot(), sb = (1 - a).squareRoot()
        return original.zip(noise) { x, n in sa * x + sb * n }
    }
}
