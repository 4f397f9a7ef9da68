import Foundation

/// The diffusion model's training noise schedule, and the timestep and sigma schedules that
/// samplers derive from it.
///
/// Matches diffusers for SD 1.x's `scaled_linear` schedule (beta 0.00085...0.012 over 1000
/// steps): betas = linspace(sqrt(start), sqrt(end))^2 in float32 (torch's linspace, which
/// fills the first half from the start and the second from the end with fused multiply-adds),
/// alphas_cumprod accumulated in double precision and stored as float32 (as torch.cumprod on
/// the CPU), sigma = sqrt((1 - alphas_cumprod) / alphas_cumprod). Differences: torch's sqrt
/// and numpy's float32 log are not always correctly rounded; ours are, so a few table entries
/// differ by one unit in the last place.
public struct NoiseSchedule: Sendable, Equatable {
    /// Cumulative products of (1 - beta), index = training timestep.
    public let alphasCumprod: [Float]
    /// sqrt((1 - a) / a), ascending with t.
    public let sigmas: [Float]
    /// log(sigma) as float32.
    public let logSigmas: [Float]

    public var trainingSteps: Int { alphasCumprod.count }

    /// The scaled-linear schedule.
    public init(betaStart: Double = 0.00085, betaEnd: Double = 0.012, trainingSteps n: Int = 1000) {
        let start = Float(betaStart.squareRoot()), end = Float(betaEnd.squareRoot())
        let step = (end - start) / Float(n - 1)
        var cumulative = 1.0
        var ac = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let v = i < n / 2 ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(n - 1 - i))
            let alpha = 1 - v * v
            cumulative *= Double(alpha)
            ac[i] = Float(cumulative)
        }
        alphasCumprod = ac
        sigmas = ac.map { ((1 - $0) / $0).squareRoot() }
        logSigmas = sigmas.map { Foundation.log($0) }
    }

    /// SD 1.x's schedule.
    public static let sd15 = NoiseSchedule()

    // MARK: - Interpolation (numpy semantics, double precision)

    /// `np.interp(t, arange(N), sigmas)`: the sigma of a fractional timestep, clamped at the ends.
    public func sigma(atTimestep t: Double) -> Double {
        let n = sigmas.count
        if t <= 0 { return Double(sigmas[0]) }
        if t >= Double(n - 1) { return Double(sigmas[n - 1]) }
        let j = Int(t.rounded(.down))
        if Double(j) == t { return Double(sigmas[j]) }
        return (Double(sigmas[j + 1]) - Double(sigmas[j])) * (t - Double(j)) + Double(sigmas[j])
    }

    /// diffusers' `_sigma_to_t`: the fractional timestep whose log-sigma interpolates to `sigma`'s.
    public func timestep(forSigma sigma: Double) -> Double {
        let logSigma = Foundation.log(Swift.max(sigma, 1e-10))
        var low = 0
        for i in 0..<logSigmas.count where logSigma - Double(logSigmas[i]) >= 0 { low = i }
        low = Swift.min(low, logSigmas.count - 2)
        let high = low + 1
        var w = (Double(logSigmas[low]) - logSigma) / (Double(logSigmas[low]) - Double(logSigmas[high]))
        w = Swift.min(Swift.max(w, 0), 1)
        return (1 - w) * Double(low) + w * Double(high)
    }

    /// Karras et al. (2022), eq. 5: n sigmas from `maximum` to `minimum`, evenly spaced in sigma^(1/7).
    public static func karrasSigmas(minimum: Double, maximum: Double, count n: Int) -> [Double] {
        let rho = 7.0
        let lo = Foundation.pow(minimum, 1 / rho), hi = Foundation.pow(maximum, 1 / rho)
        return linspace(0, 1, n).map { Foundation.pow(hi + $0 * (lo - hi), rho) }
    }
}

/// How the inference timesteps are spread over the training steps (diffusers' `timestep_spacing`).
public enum TimestepSpacing: String, Sendable, CaseIterable {
    /// Multiples of 1000/N counted up from 0, plus `steps_offset` (1): SD 1.5's default for DDPM and DDIM.
    case leading
    /// Counted down from 999 in steps of 1000/N.
    case trailing
    /// N evenly spaced points from 999 to 0: the default of Euler, Euler ancestral and DPM++.
    case linspace
}

// MARK: - numpy helpers (double precision)

/// `np.linspace(a, b, n)`: i * step + a, with the last point exactly b.
func linspace(_ a: Double, _ b: Double, _ n: Int) -> [Double] {
    guard n > 1 else { return n == 1 ? [a] : [] }
    let step = (b - a) / Double(n - 1)
    var values = (0..<n).map { Double($0) * step + a }
    values[n - 1] = b
    return values
}

/// `np.arange(start, 0, -r)` for a positive float r, element by element as numpy computes it
/// (start, start - r, then start + i * d with d the first difference). numpy's length
/// ceil(start / r) makes one extra element for some N (e.g. 61), as in diffusers.
func arangeDown(from start: Double, by r: Double) -> [Double] {
    let count = Int((start / r).rounded(.up))
    guard count > 0 else { return [] }
    var values = [start]
    if count > 1 {
        let second = start + -r
        let d = second - start
        values.append(second)
        for i in 2..<count { values.append(start + Double(i) * d) }
    }
    return values
}

extension NoiseSchedule {
    /// The integer timesteps DDPM and DDIM use for `steps` steps (also DPM++'s trailing spacing).
    func integerTimesteps(_ n: Int, spacing: TimestepSpacing, offset: Int = 1) -> [Int] {
        let t = trainingSteps
        switch spacing {
        case .leading:
            let ratio = t / n
            return (0..<n).reversed().map { Int((Double($0 * ratio)).rounded(.toNearestOrEven)) + offset }
        case .trailing:
            return arangeDown(from: Double(t), by: Double(t) / Double(n)).map { Int($0.rounded(.toNearestOrEven)) - 1 }
        case .linspace:
            return linspace(0, Double(t - 1), n).reversed().map { Int($0.rounded(.toNearestOrEven)) }
        }
    }

    /// The training sigma of an integer timestep; -1 (numpy's wrap-around of the trailing spacing's
    /// extra step) reads the last entry, as Python indexing does.
    func alphaCumprod(_ t: Int) -> Float { t >= 0 ? alphasCumprod[t] : alphasCumprod[alphasCumprod.count + t] }
}
