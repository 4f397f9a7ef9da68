import Foundation
import TensorCore

/// The timesteps of diffusers' `LCMScheduler` and `TCDScheduler` (`set_timesteps` with
/// `original_inference_steps` 50): the distillation schedule 1000/50 x (1...50 x strength) - 1,
/// counted down, of which `n` are taken at evenly spaced indices. img2img's `strength` shortens
/// that schedule rather than skipping steps, so every one of the `n` steps runs.
func consistencyTimesteps(_ n: Int, strength: Double, schedule: NoiseSchedule, originalSteps: Int = 50) -> [Int] {
    let k = schedule.trainingSteps / originalSteps
    let origin = Array((1...Swift.max(1, Int(Double(originalSteps) * strength))).map { $0 * k - 1 }.reversed())
    // np.floor(np.linspace(0, len, n, endpoint=False)): i * (len / n).
    let step = Double(origin.count) / Double(n)
    return (0..<n).map { origin[Int((Double($0) * step).rounded(.down))] }
}

/// The largest step count the consistency samplers allow at `strength`: one per step of the
/// shortened distillation schedule (diffusers refuses more).
public func consistencyMaximumSteps(strength: Double, originalSteps: Int = 50) -> Int {
    Swift.max(0, Int(Double(originalSteps) * strength))
}

/// Latent Consistency Model sampling (Luo et al. 2023): each step predicts the clean latent with
/// the boundary-condition scalings c_skip, c_out (sigma_data 0.5, timestep scaling 10) and, but
/// for the last step, noises it afresh to the next timestep. Matches diffusers' `LCMScheduler`
/// (SD 1.5 config, `set_alpha_to_one`) step by step, including its img2img `strength`, with the
/// step noise drawn from the same generator as the starting noise. Leaves out: custom timesteps,
/// thresholding, clipping, v-prediction.
public struct LCMSampler: Sampler {
    let schedule: NoiseSchedule
    let steps: [Int]

    public init(schedule: NoiseSchedule, steps count: Int, strength: Double = 1) {
        self.schedule = schedule
        steps = consistencyTimesteps(count, strength: strength, schedule: schedule)
    }

    public var timesteps: [Float] { steps.map(Float.init) }
    public var initialNoiseScale: Float { 1 }
    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    /// (c_skip, c_out) at timestep t, in float32 as torch computes them.
    static func boundaryScalings(_ t: Int) -> (Float, Float) {
        let scaled = Float(t) * 10, sigmaData2: Float = 0.25
        return (sigmaData2 / (scaled * scaled + sigmaData2), scaled / (scaled * scaled + sigmaData2).squareRoot())
    }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let t = steps[i]
        let a = schedule.alphaCumprod(t)
        let sa = a.squareRoot(), sb = (1 - a).squareRoot()
        let (cSkip, cOut) = LCMSampler.boundaryScalings(t)
        let denoised = x.zip(eps) { x, e in cOut * ((x - sb * e) / sa) + cSkip * x }
        guard i < steps.count - 1 else { return denoised }
        let ap = schedule.alphaCumprod(steps[i + 1])
        let (sap, sbp) = (ap.squareRoot(), (1 - ap).squareRoot())
        return denoised.zip(noise.randn(eps.shape)) { d, z in sap * d + sbp * z }
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        VariancePreserving.addNoise(original, noise: noise, alphaCumprod: schedule.alphaCumprod(steps[step]))
    }
}

/// Trajectory Consistency Distillation sampling (Zheng et al. 2024): each step predicts the clean
/// latent, moves it to the intermediate timestep s = floor((1 - gamma) x t_next) along the
/// predicted noise, and, with gamma > 0 and but for the last step, noises it afresh from s to
/// t_next. gamma 0 is deterministic. Matches diffusers' `TCDScheduler` (SD 1.5 config, `eta` =
/// gamma) step by step, including its img2img `strength`. Leaves out: custom timesteps, v- and
/// x-prediction.
public struct TCDSampler: Sampler {
    let schedule: NoiseSchedule
    let steps: [Int]
    let gamma: Float

    public init(schedule: NoiseSchedule, steps count: Int, gamma: Float, strength: Double = 1) {
        self.schedule = schedule
        self.gamma = gamma
        steps = consistencyTimesteps(count, strength: strength, schedule: schedule)
    }

    public var timesteps: [Float] { steps.map(Float.init) }
    public var initialNoiseScale: Float { 1 }
    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let t = steps[i], next = i < steps.count - 1 ? steps[i + 1] : 0
        // torch: (1 - eta) * prev_timestep in float32, floored.
        let s = Int((Float(1 - Double(gamma)) * Float(next)).rounded(.down))
        let a = schedule.alphaCumprod(t), aNext = schedule.alphaCumprod(next), aS = schedule.alphaCumprod(s)
        let (sa, sb) = (a.squareRoot(), (1 - a).squareRoot())
        let (saS, sbS) = (aS.squareRoot(), (1 - aS).squareRoot())
        let noised = x.zip(eps) { x, e in saS * ((x - sb * e) / sa) + sbS * e }
        guard gamma > 0, i < steps.count - 1 else { return noised }
        let ratio = aNext / aS
        let (keep, add) = (ratio.squareRoot(), (1 - ratio).squareRoot())
        return noised.zip(noise.randn(eps.shape)) { n, z in keep * n + add * z }
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        VariancePreserving.addNoise(original, noise: noise, alphaCumprod: schedule.alphaCumprod(steps[step]))
    }
}
