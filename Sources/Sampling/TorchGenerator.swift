import Foundation
import TensorCore

/// A random generator that reproduces PyTorch's CPU generator, so that a seed gives the same
/// noise as `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` in diffusers
/// or ComfyUI (with a CPU generator), draw after draw.
///
/// Matches: the mt19937 stream seeded with `init_genrand(seed)`; float uniforms from the low
/// 24 bits of one draw; `randn` on 16 or more elements through torch's blockwise Box-Muller
/// (all uniforms first, then per block of 16: r = sqrt(-2 ln(1 - u[j])), theta = 2 pi u[j+8],
/// and a recomputed last block when the count is not a multiple of 16); fewer than 16
/// elements through torch's scalar double-precision path with its cached second sample.
/// Differences: torch computes log/sin/cos with its own vectorised maths; glibc's agree
/// bit for bit on most values and within 3e-7 on the rest.
public final class TorchGenerator {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624
    /// torch's cached second normal of the scalar path.
    private var cachedNormal: Double?

    /// A generator in the state of `torch.Generator().manual_seed(seed)`.
    public init(seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for i in 1..<624 {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
        index = 624
    }

    /// The next 32-bit output of mt19937.
    public func next32() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    private func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7fff_ffff)
            var value = state[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { value ^= 0x9908_b0df }
            state[i] = value
        }
        index = 0
    }

    /// A float in [0, 1) as torch's `uniform_` on float32 tensors makes it.
    func uniformFloat() -> Float { Float(next32() & 0xff_ffff) * Float(sign: .plus, exponent: -24, significand: 1) }

    /// A double in [0, 1) from 53 bits of two draws, as torch's `uniform_real_distribution<double>`.
    func uniformDouble() -> Double {
        let high = UInt64(next32()), low = UInt64(next32())
        return Double(((high << 32) | low) & ((1 << 53) - 1)) * 0x1p-53
    }

    /// A standard normal tensor of `shape`, identical to `torch.randn(shape, generator=...)`.
    public func randn(_ shape: [Int]) -> Tensor {
        var result = Tensor(uninitialized: shape)
        let count = result.count
        let p = result.mutablePointer()
        if count >= 16 {
            for i in 0..<count { p[i] = uniformFloat() }
            var block = 0
            while block + 16 <= count {
                TorchGenerator.boxMuller16(p + block)
                block += 16
            }
            if count % 16 != 0 {
                // torch redraws 16 uniforms and recomputes the last 16 elements from them.
                let tail = p + (count - 16)
                for i in 0..<16 { tail[i] = uniformFloat() }
                TorchGenerator.boxMuller16(tail)
            }
        } else {
            for i in 0..<count { p[i] = Float(scalarNormal()) }
        }
        return result
    }

    /// torch's `normal_fill_16`: pairs (j, j + 8) of uniforms become two normals.
    private static func boxMuller16(_ d: UnsafeMutablePointer<Float>) {
        let twoPi = Float(2 * Double.pi)
        for j in 0..<8 {
            let u1 = 1 - d[j], u2 = d[j + 8]
            let radius = (-2 * Foundation.log(u1)).squareRoot()
            let theta = twoPi * u2
            d[j] = radius * Foundation.cos(theta)
            d[j + 8] = radius * Foundation.sin(theta)
        }
    }

    /// torch's `normal_distribution<double>`: Box-Muller in double precision, caching the sine half.
    private func scalarNormal() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = uniformDouble(), u2 = uniformDouble()
        let radius = (-2 * Foundation.log1p(-u2)).squareRoot()
        let theta = 2 * Double.pi * u1
        cachedNormal = radius * Foundation.sin(theta)
        return radius * Foundation.cos(theta)
    }
}
