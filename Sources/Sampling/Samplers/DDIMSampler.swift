import Foundation
import TensorCore

/// DDIM (Song et al. 2021, eq. 12), deterministic with eta = 0 or stochastic with eta > 0.
/// Matches diffusers' `DDIMScheduler` with SD 1.5's config: the previous timestep is always
/// t - 1000 / N (whatever the spacing), and the last step uses alphas_cumprod[0]
/// (`set_alpha_to_one` false). Leaves out: thresholding, clipping, v-prediction.
public struct DDIMSampler: Sampler {
    let schedule: NoiseSchedule
    let steps: [Int]
    let eta: Float
    let stride: Int

    public init(schedule: NoiseSchedule, steps count: Int, spacing: TimestepSpacing, eta: Float) {
        self.schedule = schedule
        steps = schedule.integerTimesteps(count, spacing: spacing)
        self.eta = eta
        stride = schedule.trainingSteps / count
    }

    public var timesteps: [Float] { steps.map(Float.init) }
    public var initialNoiseScale: Float { 1 }
    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let t = steps[i], previous = t - stride
        let a = schedule.alphaCumprod(t)
        let ap = previous >= 0 ? schedule.alphaCumprod(previous) : schedule.alphasCumprod[0]
        let b = 1 - a
        let sb = b.squareRoot(), sa = a.squareRoot(), sap = ap.squareRoot()
        let variance = ((1 - ap) / b) * (1 - a / ap)
        let sd = eta * variance.squareRoot()
        let direction = ((1 - ap) - sd * sd).squareRoot()
        var previousSample = x.zip(eps) { x, e in
            let x0 = (x - sb * e) / sa
            return sap * x0 + direction * e
        }
        if eta > 0 {
            let z = noise.randn(eps.shape)
            previousSample = previousSample.zip(z) { p, z in p + sd * z }
        }
        return previousSample
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        VariancePreserving.addNoise(original, noise: noise, alphaCumprod: schedule.alphaCumprod(steps[step]))
    }
}
