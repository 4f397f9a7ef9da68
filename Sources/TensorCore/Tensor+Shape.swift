import CKernels
import Foundation

// MARK: - Joining and splitting

extension Tensor {
    /// Concatenates tensors along `axis`; all other extents must agree.
    public static func concatenate(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concatenate needs at least one tensor")
        let first = parts[0].shape
        for part in parts {
            precondition(part.rank == first.count && part.shape.enumerated().allSatisfy { $0.offset == axis || $0.element == first[$0.offset] },
                         "concatenate: shape \(part.shape) does not fit \(first) along axis \(axis)")
        }
        var outShape = first
        outShape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        let outer = first[..<axis].reduce(1, *)
        let inner = first[(axis + 1)...].reduce(1, *)
        var result = Tensor(uninitialized: outShape)
        let dst = result.mutablePointer()
        let outRow = outShape[axis] * inner
        var column = 0
        for part in parts {
            let width = part.shape[axis] * inner
            let src = part.pointer
            let col = column
            Parallel.forEach(outer, minimumPerThread: Swift.max(1, 16384 / Swift.max(width, 1))) { o in
                (dst + o * outRow + col).update(from: src + o * width, count: width)
            }
            column += width
        }
        return result
    }

    /// Splits `axis` into `count` equal parts (copies), as `torch.chunk`.
    public func chunked(_ count: Int, axis: Int) -> [Tensor] {
        precondition(shape[axis] % count == 0, "chunked: axis \(axis) of \(shape) not divisible by \(count)")
        let part = shape[axis] / count
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        var partShape = shape
        partShape[axis] = part
        return (0..<count).map { index in
            var piece = Tensor(uninitialized: partShape)
            let dst = piece.mutablePointer(), src = pointer
            let width = part * inner, row = shape[axis] * inner
            Parallel.forEach(outer, minimumPerThread: Swift.max(1, 16384 / Swift.max(width, 1))) { o in
                (dst + o * width).update(from: src + o * row + index * width, count: width)
            }
            return piece
        }
    }

    /// Swaps the last two axes: (..., M, N) -> (..., N, M). Used to turn (B, C, H*W) feature
    /// maps into (B, H*W, C) token sequences and back.
    public func transposedLastTwo() -> Tensor {
        precondition(rank >= 2, "transposedLastTwo needs rank >= 2, got \(shape)")
        let m = shape[rank - 2], n = shape[rank - 1]
        let batch = count / Swift.max(m * n, 1)
        var outShape = shape
        outShape.swapAt(rank - 2, rank - 1)
        var result = Tensor(uninitialized: outShape)
        let src = pointer, dst = result.mutablePointer()
        // Bands of 32 rows (a multiple of the kernel's 8 x 8 register blocks), in parallel.
        let bands = (m + 31) / 32
        Parallel.forEach(batch * bands, minimumPerThread: Swift.max(1, 65536 / Swift.max(32 * n, 1))) { job in
            let b = job / bands, i0 = (job % bands) * 32
            sdf_transpose(src + b * m * n, m, n, i0, Swift.min(m, i0 + 32), dst + b * m * n)
        }
        return result
    }
}

// MARK: - Resampling

extension Tensor {
    /// Nearest-neighbour upsampling by 2 as `F.interpolate(scale_factor=2, mode="nearest")`:
    /// (N, C, H, W) -> (N, C, 2H, 2W).
    public func upsampledNearest2x() -> Tensor {
        precondition(rank == 4, "upsampledNearest2x expects NCHW, got \(shape)")
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        var result = Tensor(uninitialized: [shape[0], shape[1], 2 * h, 2 * w])
        let src = pointer, dst = result.mutablePointer()
        Parallel.forEach(planes * h, minimumPerThread: 64) { job in
            let s = src + job * w
            let d = dst + job * 4 * w  // rows 2y and 2y + 1 of the plane
            for x in 0..<w {
                d[2 * x] = s[x]
                d[2 * x + 1] = s[x]
            }
            (d + 2 * w).update(from: d, count: 2 * w)
        }
        return result
    }

    /// Nearest-neighbour resize to `height` x `width` as `F.interpolate(size=..., mode="nearest")`:
    /// source index floor(dst * in / out) with the scale computed in float32, as PyTorch does.
    /// (N, C, H, W) -> (N, C, height, width)
    public func resizedNearest(height: Int, width: Int) -> Tensor {
        precondition(rank == 4, "resizedNearest expects NCHW, got \(shape)")
        let (h, w) = (shape[2], shape[3])
        if height == 2 * h && width == 2 * w { return upsampledNearest2x() }
        let planes = shape[0] * shape[1]
        let scaleY = Float(h) / Float(height), scaleX = Float(w) / Float(width)
        let sourceX = (0..<width).map { Swift.min(Int((Float($0) * scaleX).rounded(.down)), w - 1) }
        var result = Tensor(uninitialized: [shape[0], shape[1], height, width])
        let src = pointer, dst = result.mutablePointer()
        Parallel.forEach(planes * height, minimumPerThread: 64) { job in
            let plane = job / height, y = job % height
            let sy = Swift.min(Int((Float(y) * scaleY).rounded(.down)), h - 1)
            let s = src + plane * h * w + sy * w, d = dst + job * width
            for x in 0..<width { d[x] = s[sourceX[x]] }
        }
        return result
    }

    /// 2x2 average pooling with stride 2: (N, C, H, W) -> (N, C, H/2, W/2).
    public func averagePooled2x() -> Tensor {
        precondition(rank == 4, "averagePooled2x expects NCHW, got \(shape)")
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        let oh = h / 2, ow = w / 2
        var result = Tensor(uninitialized: [shape[0], shape[1], oh, ow])
        let src = pointer, dst = result.mutablePointer()
        Parallel.forEach(planes * oh, minimumPerThread: 64) { job in
            let plane = job / oh, y = job % oh
            let top = src + plane * h * w + 2 * y * w, bottom = top + w
            let d = dst + job * ow
            for x in 0..<ow {
                d[x] = (top[2 * x] + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1]) * 0.25
            }
        }
        return result
    }
}

// MARK: - Embeddings

extension Tensor {
    /// Sinusoidal timestep embedding as diffusers' `get_timestep_embedding`:
    /// timesteps (N) -> (N, dim). Frequencies exp(-ln(maxPeriod) * i / (dim/2 - shift)),
    /// i < dim/2; the halves are [sin, cos], or [cos, sin] with `flipSinToCos` (SD's UNet).
    /// Computed in float32 in the same order as the reference. The reference's `exp` (MKL or
    /// SLEEF, 1 ulp) and glibc's differ in the last bit for about 1% of arguments; at t = 999
    /// one ulp of a frequency moves the embedding by up to 999 * 2^-24 = 6e-5.
    public static func timestepEmbedding(_ timesteps: [Float], dimension: Int, flipSinToCos: Bool = true,
                                         downscaleFrequencyShift: Float = 0, maxPeriod: Float = 10000) -> Tensor {
        let half = dimension / 2
        let logPeriod = -Float(Foundation.log(Double(maxPeriod)))
        let frequencies = (0..<half).map { i in
            Foundation.exp(logPeriod * Float(i) / (Float(half) - downscaleFrequencyShift))
        }
        var result = Tensor(zeros: [timesteps.count, dimension])
        let p = result.mutablePointer()
        for (row, t) in timesteps.enumerated() {
            let out = p + row * dimension
            for i in 0..<half {
                let angle = t * frequencies[i]
                let (first, second) = flipSinToCos ? (Foundation.cos(angle), Foundation.sin(angle))
                                                   : (Foundation.sin(angle), Foundation.cos(angle))
                out[i] = first
                out[half + i] = second
            }
        }
        return result
    }
}

