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

    /// `F.pixel_shuffle(x, r)`: channel groups of r² become r x r blocks of pixels,
    /// (N, C r², H, W) -> (N, C, H r, W r); output (c, y r + i, x r + j) is input (c r² + i r + j, y, x).
    public func pixelShuffled(_ r: Int) -> Tensor {
        precondition(rank == 4 && r >= 1 && shape[1] % (r * r) == 0, "pixelShuffled(\(r)) of \(shape)")
        let (n, c, h, w) = (shape[0], shape[1] / (r * r), shape[2], shape[3])
        var result = Tensor(uninitialized: [n, c, h * r, w * r])
        let src = pointer, dst = result.mutablePointer()
        Parallel.forEach(n * c * h, minimumPerThread: 16) { job in
            let (plane, y) = (job / h, job % h)
            for i in 0..<r {
                let d = dst + (plane * h * r + y * r + i) * w * r
                for j in 0..<r {
                    let s = src + ((plane * r * r + i * r + j) * h + y) * w
                    for x in 0..<w { d[x * r + j] = s[x] }
                }
            }
        }
        return result
    }

    /// `F.pixel_unshuffle(x, r)`, the inverse of `pixelShuffled`: (N, C, H r, W r) -> (N, C r², H, W).
    public func pixelUnshuffled(_ r: Int) -> Tensor {
        precondition(rank == 4 && r >= 1 && shape[2] % r == 0 && shape[3] % r == 0, "pixelUnshuffled(\(r)) of \(shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2] / r, shape[3] / r)
        var result = Tensor(uninitialized: [n, c * r * r, h, w])
        let src = pointer, dst = result.mutablePointer()
        Parallel.forEach(n * c * h, minimumPerThread: 16) { job in
            let (plane, y) = (job / h, job % h)
            for i in 0..<r {
                let s = src + (plane * h * r + y * r + i) * w * r
                for j in 0..<r {
                    let d = dst + ((plane * r * r + i * r + j) * h + y) * w
                    for x in 0..<w { d[x] = s[x * r + j] }
                }
            }
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

    /// How `resized` interpolates, as `F.interpolate(mode=...)` with `align_corners=False` and no antialiasing.
    public enum Interpolation: String, Sendable, CaseIterable {
        /// `nearest`: source floor(dst * in / out) (PyTorch's legacy nearest, A1111's "Latent (nearest)").
        case nearest
        /// `nearest-exact`: source floor((dst + 0.5) * in / out) (ComfyUI's default latent upscale).
        case nearestExact = "nearest-exact"
        /// Linear along each axis (A1111's "Latent", its hires fix's default).
        case bilinear
        /// Keys' cubic convolution with a = -0.75, edges repeated (A1111's "Latent (bicubic)").
        case bicubic
    }

    /// Resizes the two spatial axes to `height` x `width` as PyTorch's `F.interpolate(size=...)` on
    /// the CPU: the scale in float32, source coordinates (dst + 0.5) * scale - 0.5, the taps of each
    /// output applied along the width and then the height. (N, C, H, W) -> (N, C, height, width)
    public func resized(height: Int, width: Int, interpolation: Interpolation) -> Tensor {
        precondition(rank == 4 && height > 0 && width > 0, "resized expects NCHW and a positive size, got \(shape) -> \(height)x\(width)")
        if interpolation == .nearest { return resizedNearest(height: height, width: width) }
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let rows = Tensor.taps(from: h, to: height, interpolation), columns = Tensor.taps(from: w, to: width, interpolation)
        // Along the width: (N, C, H, W) -> (N, C, H, width).
        var across = Tensor(uninitialized: [n, c, h, width])
        let src = pointer, mid = across.mutablePointer()
        Parallel.forEach(n * c * h, minimumPerThread: 64) { line in
            let s = src + line * w, d = mid + line * width
            for x in 0..<width { d[x] = columns[x].apply { s[$0] } }
        }
        // Along the height: -> (N, C, height, width).
        var result = Tensor(uninitialized: [n, c, height, width])
        let out = result.mutablePointer(), planeIn = h * width
        Parallel.forEach(n * c * height, minimumPerThread: 64) { job in
            let plane = job / height, y = job % height
            let s = UnsafePointer(mid) + plane * planeIn, d = out + job * width
            for x in 0..<width { d[x] = rows[y].apply { s[$0 * width + x] } }
        }
        return result
    }

    /// The source indices (clamped to the input) and weights of one output position.
    struct Taps {
        var indices: [Int]
        var weights: [Float]

        /// The weighted sum, in PyTorch's order: w0 * v0 + w1 * v1 + ...
        @inline(__always) func apply(_ value: (Int) -> Float) -> Float {
            var sum: Float = 0
            for k in 0..<indices.count { sum += value(indices[k]) * weights[k] }
            return sum
        }
    }

    /// The taps of every output position along an axis resized from `input` to `output`.
    static func taps(from input: Int, to output: Int, _ interpolation: Interpolation) -> [Taps] {
        let scale = Float(input) / Float(output)
        return (0..<output).map { i in
            switch interpolation {
            case .nearest, .nearestExact:
                let offset: Float = interpolation == .nearest ? 0 : 0.5
                return Taps(indices: [Swift.min(Int(((Float(i) + offset) * scale).rounded(.down)), input - 1)], weights: [1])
            case .bilinear:
                let real = Swift.max(scale * (Float(i) + 0.5) - 0.5, 0)
                let index = Swift.min(Int(real.rounded(.down)), input - 1)
                let lambda = Swift.min(Swift.max(real - Float(index), 0), 1)
                return Taps(indices: [index, index + (index < input - 1 ? 1 : 0)], weights: [1 - lambda, lambda])
            case .bicubic:
                let real = scale * (Float(i) + 0.5) - 0.5
                let index = Int(real.rounded(.down)), t = real - Float(index)
                let a: Float = -0.75
                func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }        // |x| <= 1
                func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }   // 1 < |x| < 2
                return Taps(indices: (0..<4).map { Swift.min(Swift.max(index - 1 + $0, 0), input - 1) },
                            weights: [far(t + 1), near(t), near(1 - t), far(2 - t)])
            }
        }
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

