import CKernels

// MARK: - Normalisation

extension Tensor {
    /// Group normalisation as `torch.nn.GroupNorm`: (N, C, ...) with C split into `groups`,
    /// each group normalised over its channels and spatial positions, then scaled by
    /// `weight` (C) and shifted by `bias` (C). With `fusedSiLU`, SiLU is applied to the result
    /// in the same pass (GroupNorm followed by SiLU is the common pair in SD's ResBlocks).
    public func groupNorm(groups: Int, weight: Tensor, bias: Tensor, epsilon: Float,
                          fusedSiLU: Bool = false) -> Tensor {
        precondition(rank >= 2 && shape[1] % groups == 0,
                     "groupNorm: \(shape[1]) channels not divisible into \(groups) groups")
        let n = shape[0], c = shape[1]
        let spatial = count / Swift.max(n * c, 1)
        let perGroup = (c / groups) * spatial
        var result = Tensor(uninitialized: shape)
        let src = pointer, dst = result.mutablePointer()
        let gamma = weight.pointer, beta = bias.pointer
        Parallel.forEach(n * groups) { ng in
            let base = ng * perGroup
            var mean: Float = 0, variance: Float = 0
            sdf_mean_variance(src + base, perGroup, &mean, &variance)
            let invStd = 1 / (variance + epsilon).squareRoot()
            let firstChannel = (ng % groups) * (c / groups)
            for ch in 0..<(c / groups) {
                let scale = gamma[firstChannel + ch] * invStd
                let shift = beta[firstChannel + ch] - mean * scale
                let offset = base + ch * spatial
                sdf_scale_shift(src + offset, dst + offset, spatial, scale, shift, fusedSiLU ? 1 : 0)
            }
        }
        return result
    }

    /// Layer normalisation over the last axis as `torch.nn.LayerNorm`: (..., C), with
    /// `weight` (C) and `bias` (C).
    public func layerNorm(weight: Tensor, bias: Tensor, epsilon: Float) -> Tensor {
        let width = shape[rank - 1]
        precondition(weight.count == width && bias.count == width,
                     "layerNorm: weight \(weight.shape) for width \(width)")
        let rows = count / Swift.max(width, 1)
        var result = Tensor(uninitialized: shape)
        let src = pointer, dst = result.mutablePointer()
        let gamma = weight.pointer, beta = bias.pointer
        Parallel.forRanges(rows, minimumPerThread: Swift.max(1, 8192 / Swift.max(width, 1))) { range in
            for r in range {
                let s = src + r * width, d = dst + r * width
                var mean: Float = 0, variance: Float = 0
                sdf_mean_variance(s, width, &mean, &variance)
                let invStd = 1 / (variance + epsilon).squareRoot()
                for i in 0..<width { d[i] = (s[i] - mean) * invStd * gamma[i] + beta[i] }
            }
        }
        return result
    }
}
