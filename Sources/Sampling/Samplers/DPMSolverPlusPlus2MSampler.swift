import Foundation
import TensorCore

/// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver in
/// log-SNR time on the data prediction. Matches diffusers' `DPMSolverMultistepScheduler`
/// (algorithm dpmsolver++, order 2, midpoint, lower-order final step, final sigma 0), with
/// its timestep construction (N + 1 points with the last dropped) and optional Karras sigmas
/// over the full training range. Leaves out: SDE variants, order 3, thresholding, v-prediction.
public struct DPMSolverPlusPlus2MSampler: Sampler {
    public let timesteps: [Float]
    public let sigmas: [Float]
    public var initialNoiseScale: Float { 1 }
    private var previousPrediction: Tensor?
    private var lowerOrderSteps = 0

    public init(schedule s: NoiseSchedule, steps n: Int, spacing: TimestepSpacing, karras: Bool) {
        let t = s.trainingSteps
        var steps: [Int]
        switch spacing {
        case .linspace:
            steps = Array(linspace(0, Double(t - 1), n + 1).reversed().dropLast()).map { Int($0.rounded(.toNearestOrEven)) }
        case .leading:
            let r = t / (n + 1)
            steps = Array((0...n).reversed().dropLast()).map { $0 * r + 1 }
        case .trailing:
            steps = s.integerTimesteps(n, spacing: .trailing)
        }
        var sigmas = steps.map { s.sigma(atTimestep: Double($0)) }
        if karras {
            sigmas = NoiseSchedule.karrasSigmas(minimum: Double(s.sigmas[0]), maximum: Double(s.sigmas[t - 1]), count: n)
            steps = sigmas.map { Int(s.timestep(forSigma: $0).rounded(.toNearestOrEven)) }
        }
        timesteps = steps.map(Float.init)
        self.sigmas = sigmas.map(Float.init) + [0]
    }

    public func modelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    /// alpha = 1 / sqrt(sigma^2 + 1) and sigma * alpha: the VP coefficients of a noise level.
    private func alphaSigma(_ sigma: Float) -> (Float, Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    private func lambda(_ alphaSigma: (Float, Float)) -> Float { Foundation.log(alphaSigma.0) - Foundation.log(alphaSigma.1) }

    public mutating func step(_ eps: Tensor, at i: Int, sample x: Tensor, noise: NoiseSource) -> Tensor {
        let last = i == timesteps.count - 1
        let (alphaS, sigmaS) = alphaSigma(sigmas[i]), (alphaT, sigmaT) = alphaSigma(sigmas[i + 1])
        // Data prediction m0 = (x - sigma_s eps) / alpha_s.
        let m0 = x.zip(eps) { x, e in (x - sigmaS * e) / alphaS }
        let h = lambda((alphaT, sigmaT)) - lambda((alphaS, sigmaS))
        let ratio = sigmaT / sigmaS
        let c = alphaT * (Foundation.exp(-h) - 1)
        let result: Tensor
        if lowerOrderSteps < 1 || last || previousPrediction == nil {
            // First order (DPM-Solver++(1), i.e. DDIM): at the start and at the final step, where h is infinite.
            result = x.zip(m0) { x, m in ratio * x - c * m }
        } else {
            let m1 = previousPrediction!
            let h0 = lambda((alphaS, sigmaS)) - lambda(alphaSigma(sigmas[i - 1]))
            let r0 = h0 / h
            let inverse = 1 / r0, half = 0.5 * c
            let d1 = m0.zip(m1) { a, b in inverse * (a - b) }
            let firstOrder = x.zip(m0) { x, m in ratio * x - c * m }
            result = firstOrder.zip(d1) { f, d in f - half * d }
        }
        previousPrediction = m0
        lowerOrderSteps = Swift.min(lowerOrderSteps + 1, 2)
        return result
    }

    public func addNoise(_ original: Tensor, noise: Tensor, step: Int) -> Tensor {
        let (alpha, sigma) = alphaSigma(sigmas[step])
        return original.zip(noise) { x, n in alpha * x + sigma * n }
    }
}
