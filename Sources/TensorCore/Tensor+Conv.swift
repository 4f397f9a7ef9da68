import CKernels
import Foundation

/// Zero padding on the four sides of an image, in pixels.
public struct Padding2D: Equatable, Sendable {
    public var top: Int, bottom: Int, left: Int, right: Int

    public init(top: Int, bottom: Int, left: Int, right: Int) {
        self.top = top; self.bottom = bottom; self.left = left; self.right = right
    }

    /// The same padding on every side.
    public static func uniform(_ p: Int) -> Padding2D { Padding2D(top: p, bottom: p, left: p, right: p) }
    /// No padding.
    public static let zero = uniform(0)
}

// MARK: - Convolution

extension Tensor {
    /// 2-D convolution as `torch.nn.functional.conv2d` with groups = 1:
    /// (N, C, H, W) * weight (O, C, KH, KW) + bias (O) -> (N, O, OH, OW),
    /// OH = (H + top + bottom - KH) / stride + 1.
    ///
    /// A 1x1 convolution without stride or padding is one GEMM per image. Others unfold the
    /// input (im2col) a band of output rows at a time, so the unfolded band stays small, and
    /// multiply each band with one GEMM: (O, C*KH*KW) x (C*KH*KW, rows*OW); batches of small
    /// images unfold into one matrix (up to 3 x `bandFloats`) and share one GEMM. `bandFloats`
    /// bounds the unfolded band or Winograd's transformed tiles (default 4M floats, 16 MB). 3x3
    /// convolutions with stride 1 and padding 1 use `mode`; without one, the algorithm measured
    /// fastest for this shape among the candidates of `ComputeSettings.current.convolution` (`KernelTuning.tuned`),
    /// or where nothing is measured, that mode where Winograd pays (at least 1024
    /// output pixels over the batch and more than 4 outputs) and `direct` elsewhere. `direct` is
    /// im2col, or for 4 outputs or fewer direct multiply-adds (`convolveFewOutputs`).
    ///
    /// `residual` (the output's shape) is added to the result and `relu` applies ReLU after that;
    /// Winograd does both on each output row while it is in the cache, instead of in extra passes.
    /// `upsampling` convolves the nearest 2x upsampling of this tensor instead (the result of
    /// `upsampledNearest2x().conv2d(...)`): with 3x3 stride 1 padding 1, Winograd F(2,3) reads its
    /// tiles from this tensor and skips the 7 of 16 positions that the repeated pixels make exactly
    /// zero (the same result with 9/16 of the multiplications and no upsampled copy).
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Padding2D = .zero,
                       bandFloats: Int = 4 << 20, mode: ConvolutionMode? = nil,
                       residual: Tensor? = nil, relu: Bool = false, upsampling: Bool = false) -> Tensor {
        precondition(rank == 4 && weight.rank == 4 && weight.shape[1] == shape[1],
                     "conv2d: input \(shape) does not match weight \(weight.shape)")
        let (n, c, h, w) = convolvedShape(upsampling: upsampling)
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = (h + padding.top + padding.bottom - kh) / stride + 1
        let ow = (w + padding.left + padding.right - kw) / stride + 1
        precondition(oh > 0 && ow > 0, "conv2d: kernel \(weight.shape) larger than padded input \(shape)")
        if let bias { precondition(bias.count == o, "conv2d: bias \(bias.shape) for \(o) output channels") }
        if let residual { precondition(residual.shape == [n, o, oh, ow], "conv2d: residual \(residual.shape) for output \([n, o, oh, ow])") }
        let fusion = Fusion(residual: residual, relu: relu, upsampling: upsampling)

        FLOPCounter.add(2 * Double(n * o * oh * ow) * Double(c * kh * kw))
        let winogradShape = kh == 3 && kw == 3 && stride == 1 && padding == .uniform(1)
        if let mode {
            return convolve(weight: weight, bias: bias, stride: stride, padding: padding, bandFloats: bandFloats, mode: mode, fusion: fusion)
        }
        guard winogradShape else {
            return convolve(weight: weight, bias: bias, stride: stride, padding: padding, bandFloats: bandFloats, mode: .direct,
                            fusion: fusion)
        }
        // Unmeasured, small images (the UNet's 16x16 and 8x8 levels at 512x512) use im2col:
        // transforming the large filters costs about as much as Winograd saves in the GEMMs.
        let settings = ComputeSettings.current
        let modes = settings.convolution.candidates
        var preferred = n * h * w >= 1024 && o > Tensor.fewOutputChannels ? modes : modes.reversed()
        if settings.pinned.contains(.convolution) { preferred = [preferred[0]] }
        let key = "conv3x3 \(settings.convolution.rawValue)/\(settings.precision.rawValue) \(n)x\(c)x\(h)x\(w) -> \(o)"
            + (upsampling ? " upsampled" : "")
        return KernelTuning.tuned(key, candidates: preferred) { mode in
            convolve(weight: weight, bias: bias, stride: stride, padding: padding, bandFloats: bandFloats, mode: mode, fusion: fusion)
        }
    }

    /// The (N, C, H, W) of the image a convolution sees: this tensor's, or with `upsampling` its
    /// nearest 2x upsampling's.
    func convolvedShape(upsampling: Bool) -> (n: Int, c: Int, h: Int, w: Int) {
        let scale = upsampling ? 2 : 1
        return (shape[0], shape[1], scale * shape[2], scale * shape[3])
    }

    /// What a convolution does beyond its weights and bias: a residual added after it, then ReLU;
    /// and whether it convolves the nearest 2x upsampling of its input (`conv2d(upsampling:)`).
    struct Fusion {
        var residual: Tensor?
        var relu: Bool
        var upsampling: Bool

        /// The F(tile x tile, 3x3) positions whose products are needed: all but those with row or
        /// column 2 when the input is an upsampling and the tile 2x2 (each 4x4 input window then has
        /// rows 1 and 2 equal, and columns 1 and 2, so B^T d B is exactly zero there).
        func computedPositions(tile m: Int) -> [Int] {
            let positions = (m + 2) * (m + 2)
            guard upsampling && m == 2 else { return Array(0..<positions) }
            return (0..<positions).filter { $0 / 4 != 2 && $0 % 4 != 2 }
        }

        /// Applies the residual and ReLU to `result` (the GEMM paths; Winograd applies them itself).
        func apply(to result: inout Tensor) {
            if let residual { result += residual }
            if relu { result.applyReLU() }
        }
    }

    /// `conv2d` with its algorithm decided (`mode` applies to 3x3 convolutions with stride 1 and padding 1).
    private func convolve(weight: Tensor, bias: Tensor?, stride: Int, padding: Padding2D, bandFloats: Int, mode: ConvolutionMode,
                          fusion: Fusion) -> Tensor {
        let isWinogradShape = winogradShape(weight: weight, stride: stride, padding: padding)
        let winogradTile = isWinogradShape ? mode.winogradTile : nil
        if fusion.upsampling && winogradTile != 2 {  // only F(2,3) reads the upsampling from this tensor; the rest make it
            var plain = fusion
            plain.upsampling = false
            return upsampledNearest2x().convolve(weight: weight, bias: bias, stride: stride, padding: padding, bandFloats: bandFloats,
                                                 mode: mode, fusion: plain)
        }
        if let tile = winogradTile {
            let (n, _, h, w) = convolvedShape(upsampling: fusion.upsampling)
            var result = Tensor(uninitialized: [n, weight.shape[0], h, w])
            winograd3x3(weight: weight, bias: bias, tile: tile, chunkFloats: bandFloats, fusion: fusion, into: result.mutablePointer())
            return result
        }
        var result = weight.shape[0] <= Tensor.fewOutputChannels && isWinogradShape
            ? convolveFewOutputs(weight: weight, bias: bias)
            : convolveByGEMM(weight: weight, bias: bias, stride: stride, padding: padding, bandFloats: bandFloats)
        fusion.apply(to: &result)
        return result
    }

    /// 3x3 convolutions with stride 1 and padding 1: those Winograd can do.
    private func winogradShape(weight: Tensor, stride: Int, padding: Padding2D) -> Bool {
        weight.shape[2] == 3 && weight.shape[3] == 3 && stride == 1 && padding == .uniform(1)
    }

    /// 3x3 convolutions (stride 1, padding 1) with at most this many outputs are computed directly
    /// instead of by im2col (`convolveFewOutputs`).
    static let fewOutputChannels = 4

    /// A 3x3 convolution, stride 1, padding 1, with few outputs (a decoder's last layer, to RGB) by
    /// direct multiply-adds, the outputs' accumulators in registers (`sdf_conv3x3_few`): im2col
    /// would copy the input 9 times for a GEMM of 3 rows, Winograd transform all of it for 3 rows.
    private func convolveFewOutputs(weight: Tensor, bias: Tensor?) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let o = weight.shape[0]
        var result = Tensor(uninitialized: [n, o, h, w])
        let out = result.mutablePointer(), input = pointer, weights = weight.pointer, biasPointer = bias?.pointer
        let zero = [Float](repeating: 0, count: w)
        zero.withUnsafeBufferPointer { zeroRow in
            Tensor.forEachRowBand(images: n, height: h) { b, rows in
                // input (C, H, W) -> output rows `rows` of (O, H, W)
                sdf_conv3x3_few(input + b * c * h * w, c, h, w, weights, o, biasPointer, zeroRow.baseAddress,
                                rows.lowerBound, rows.upperBound, out + b * o * h * w)
            }
        }
        return result
    }

    /// Runs `body(image, rows)` in parallel over bands of output rows of all images (N x H rows, at
    /// least 4 per task), a band never spanning two images.
    static func forEachRowBand(images n: Int, height h: Int, _ body: (Int, Range<Int>) -> Void) {
        Parallel.forRanges(n * h, minimumPerThread: 4) { rows in
            var row = rows.lowerBound
            while row < rows.upperBound {
                let (b, y) = (row / h, row % h), end = Swift.min(rows.upperBound, (b + 1) * h)
                body(b, y..<(y + end - row))
                row = end
            }
        }
    }

    /// 1x1 convolutions as one GEMM per image, others by im2col and GEMMs.
    private func convolveByGEMM(weight: Tensor, bias: Tensor?, stride: Int, padding: Padding2D, bandFloats: Int) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = (h + padding.top + padding.bottom - kh) / stride + 1
        let ow = (w + padding.left + padding.right - kw) / stride + 1
        var result = Tensor(uninitialized: [n, o, oh, ow])
        let out = result.mutablePointer()
        let outPlane = oh * ow
        // Start every output channel from its bias (or zero) and accumulate the GEMMs onto it.
        Parallel.forEach(n * o, minimumPerThread: Swift.max(1, 16384 / Swift.max(outPlane, 1))) { i in
            (out + i * outPlane).update(repeating: bias.map { $0.pointer[i % o] } ?? 0, count: outPlane)
        }

        let input = pointer
        let kernel = c * kh * kw
        if kh == 1 && kw == 1 && stride == 1 && padding == .zero {
            for b in 0..<n {
                // (O, C) x (C, H*W) -> (O, H*W)
                BLAS.sgemm(m: o, n: outPlane, k: c, a: weight.pointer, lda: c,
                           b: input + b * c * h * w, ldb: h * w, beta: 1, c: out + b * o * outPlane, ldc: outPlane)
            }
            return result
        }

        let geometry = Im2Col(channels: c, height: h, width: w, kernelHeight: kh, kernelWidth: kw,
                              stride: stride, padding: padding, outputHeight: oh, outputWidth: ow)
        if n > 1 && kernel * n * outPlane <= 3 * bandFloats {
            // Small images (the UNet's 16x16 and 8x8 levels): one GEMM for the whole batch, so the
            // large weight matrix is read and packed once instead of once per image.
            var columns = Tensor(uninitialized: [kernel, n * outPlane])
            var products = Tensor(uninitialized: [o, n * outPlane])
            let col = columns.mutablePointer(), prod = products.mutablePointer()
            for b in 0..<n {
                geometry.unfold(input + b * c * h * w, rows: 0..<oh, into: col + b * outPlane, rowStride: n * outPlane)
            }
            // (O, C*KH*KW) x (C*KH*KW, N*OH*OW) -> (O, N*OH*OW), then added onto each image's (O, OH*OW)
            BLAS.sgemm(m: o, n: n * outPlane, k: kernel, a: weight.pointer, lda: kernel, b: col, ldb: n * outPlane,
                       c: prod, ldc: n * outPlane)
            Parallel.forEach(n * o, minimumPerThread: Swift.max(1, 16384 / Swift.max(outPlane, 1))) { i in
                let (b, channel) = (i / o, i % o)
                let source = prod + channel * n * outPlane + b * outPlane, target = out + i * outPlane
                for j in 0..<outPlane { target[j] += source[j] }
            }
            withExtendedLifetime((columns, products)) {}  // col and prod point into them
            return result
        }
        let bandRows = Swift.max(1, Swift.min(oh, bandFloats / Swift.max(kernel * ow, 1)))
        var columns = Tensor(uninitialized: [kernel, bandRows * ow])
        let col = columns.mutablePointer()
        for b in 0..<n {
            let image = input + b * c * h * w
            var row0 = 0
            while row0 < oh {
                let rows = Swift.min(bandRows, oh - row0)
                geometry.unfold(image, rows: row0..<(row0 + rows), into: col)
                // (O, C*KH*KW) x (C*KH*KW, rows*OW) -> output rows [row0, row0 + rows)
                BLAS.sgemm(m: o, n: rows * ow, k: kernel, a: weight.pointer, lda: kernel,
                           b: col, ldb: rows * ow, beta: 1,
                           c: out + b * o * outPlane + row0 * ow, ldc: outPlane)
                row0 += rows
            }
        }
        withExtendedLifetime(columns) {}  // col points into it
        return result
    }
}

// MARK: - Winograd

/// How 3x3 convolutions (stride 1, padding 1) are computed. The default is Winograd F(2x2,3x3),
/// which needs 16 multiplications per 2x2 outputs instead of 36 and stays within 1e-6 of the
/// direct float32 result; `fast` uses F(4x4,3x3) (36 per 4x4, about 4x fewer than direct) at an
/// error around 1e-4 relative; `direct` is im2col + GEMM. A mode is both the setting
/// (`ComputeSettings.convolution`: `--fast`, `SDFLOW_CONV`) and, per shape, the algorithm chosen
/// among the setting's `candidates` (its raw value is its name in `kernels.json`).
public enum ConvolutionMode: String, Sendable, CaseIterable, Codable, TuningCandidate {
    case direct
    case winograd
    case fast

    /// The algorithms this mode may choose between by measuring, its own first: the exact mode's
    /// are exact, the fast mode's at most as far off as F(4x4,3x3).
    var candidates: [ConvolutionMode] {
        switch self {
        case .direct: return [.direct]
        case .winograd: return [.winograd, .direct]
        case .fast: return [.fast, .winograd, .direct]
        }
    }

    var winogradTile: Int? {
        switch self {
        case .direct: return nil
        case .winograd: return 2
        case .fast: return 4
        }
    }
}

extension Tensor {
    /// 3x3, stride 1, padding 1 by Winograd F(tile x tile, 3x3): transform the filters (U) and
    /// chunks of input tiles from all images (V), one GEMM per tile position (O x C times
    /// C x tiles; the positions run in parallel), transform back.
    /// `chunkFloats` bounds V (at least one tile).
    func winograd3x3(weight: Tensor, bias: Tensor?, tile m: Int, chunkFloats: Int, fusion: Fusion,
                     into out: UnsafeMutablePointer<Float>) {
        let (n, c, h, w) = convolvedShape(upsampling: fusion.upsampling)
        let o = weight.shape[0]
        let positions = (m + 2) * (m + 2)
        let tilesX = (w + m - 1) / m, tilesPerImage = ((h + m - 1) / m) * tilesX, tiles = n * tilesPerImage
        let filters = m == 2 ? sdf_winograd23_filters : sdf_winograd43_filters
        let outputs = m == 2 ? sdf_winograd23_outputs : sdf_winograd43_outputs
        let computed = fusion.computedPositions(tile: m)  // the others' products stay zero

        var u = Tensor(uninitialized: [positions, o, c])
        let up = u.mutablePointer(), wp = weight.pointer
        Parallel.forRanges(o) { r in filters(wp, o, c, r.lowerBound, r.upperBound, up) }
        if Swift.max(c, o) <= Tensor.narrowWinogradChannels {
            winograd3x3Narrow(u: up, o: o, tile: m, bias: bias, chunkFloats: chunkFloats, fusion: fusion, into: out)
            withExtendedLifetime(u) {}
            return
        }

        // Chunks of tiles, numbered across the images, small enough for V and M to stay within `chunkFloats`.
        let chunk = Swift.max(1, Swift.min(tiles, chunkFloats / (positions * Swift.max(c, o))))
        var v = Tensor(uninitialized: [positions, c, chunk])
        var products = computed.count < positions ? Tensor(zeros: [positions, o, chunk]) : Tensor(uninitialized: [positions, o, chunk])
        let vp = v.mutablePointer(), mp = products.mutablePointer()
        let biasPointer = bias?.pointer, residual = fusion.residual?.pointer, relu: Int32 = fusion.relu ? 1 : 0
        var first = 0
        while first < tiles {
            let count = Swift.min(chunk, tiles - first)
            // The chunk as runs of tiles within one image: (image, its first tile, tiles, column in V and M).
            var runs: [(image: Int, first: Int, count: Int, column: Int)] = []
            var next = first
            while next < first + count {
                let b = next / tilesPerImage, t = next % tilesPerImage
                let length = Swift.min(tilesPerImage - t, first + count - next)
                runs.append((b, t, length, next - first))
                next += length
            }
            Parallel.forRanges(c) { r in
                for run in runs {
                    winogradInputs(tile: m, upsampling: fusion.upsampling, image: run.image, tiles: run.first, run.count,
                                   channels: r, stride: c * chunk, ld: chunk, into: vp + run.column)
                }
            }
            Parallel.forEach(computed.count) { i in
                let e = computed[i]
                // (O, C) x (C, count) -> (O, count) at tile position e
                BLAS.sgemm(m: o, n: count, k: c, a: up + e * o * c, lda: c, b: vp + e * c * chunk, ldb: chunk,
                           c: mp + e * o * chunk, ldc: chunk, parallel: false)
            }
            Parallel.forRanges(o) { r in
                for run in runs {
                    outputs(mp + run.column, o * chunk, run.count, chunk, run.first, tilesX, h, w, biasPointer,
                            residual.map { $0 + run.image * o * h * w }, relu, r.lowerBound, r.upperBound, out + run.image * o * h * w)
                }
            }
            first += count
        }
        withExtendedLifetime((u, v, products, fusion)) {}  // up, vp, mp and residual point into them
    }
}

extension Tensor {
    /// Convolutions this narrow (at most this many input and output channels) run Winograd as
    /// one pipeline per thread (`winograd3x3Narrow`).
    static let narrowWinogradChannels = 128

    /// Winograd for narrow convolutions (TAESD's 64 channels): with few channels the GEMMs are
    /// short and the transformed tiles, written to memory and read back between the phases of
    /// `winograd3x3`, cost more than the products. Here each thread takes its own chunks of tiles
    /// small enough for its L2 cache (V and M about 256 KB each) and does all three steps on them:
    /// input transform, the GEMM of each tile position, output transform. Same arithmetic, same
    /// results. `u`: the transformed filters (positions, O, C); `chunkFloats` bounds V further.
    func winograd3x3Narrow(u up: UnsafeMutablePointer<Float>, o: Int, tile m: Int, bias: Tensor?, chunkFloats: Int,
                           fusion: Fusion, into out: UnsafeMutablePointer<Float>) {
        let (n, c, h, w) = convolvedShape(upsampling: fusion.upsampling)
        let positions = (m + 2) * (m + 2)
        let tilesX = (w + m - 1) / m, tilesPerImage = ((h + m - 1) / m) * tilesX, tiles = n * tilesPerImage
        let outputs = m == 2 ? sdf_winograd23_outputs : sdf_winograd43_outputs
        let chunk = Swift.max(1, Swift.min(tiles, Swift.min(64 << 10, chunkFloats) / (positions * Swift.max(c, o))))  // 256 KB of floats
        let chunks = (tiles + chunk - 1) / chunk
        // Positions one cache line further apart than their rows need: C x chunk is 16 KB here, and
        // positions a multiple of 4 KB apart all fall into one set of the L1 cache.
        let strideV = c * chunk + 16, strideM = o * chunk + 16
        let biasPointer = bias?.pointer, residual = fusion.residual?.pointer, relu: Int32 = fusion.relu ? 1 : 0
        let computed = fusion.computedPositions(tile: m)  // the others' products stay zero
        /// Calls `body(image, first tile in it, tiles, column in the chunk)` for the runs of tiles within
        /// one image that chunk `index` is made of.
        func runs(_ index: Int, _ body: (Int, Int, Int, Int) -> Void) {
            let first = index * chunk, end = Swift.min(first + chunk, tiles)
            var next = first
            while next < end {
                let b = next / tilesPerImage, t = next % tilesPerImage, length = Swift.min(tilesPerImage - t, end - next)
                body(b, t, length, next - first)
                next += length
            }
        }
        Parallel.forRanges(chunks) { range in
            let vp = UnsafeMutablePointer<Float>.allocate(capacity: positions * strideV)
            let mp = UnsafeMutablePointer<Float>.allocate(capacity: positions * strideM)
            defer { vp.deallocate(); mp.deallocate() }
            if computed.count < positions { mp.initialize(repeating: 0, count: positions * strideM) }
            for index in range {
                let count = Swift.min(chunk, tiles - index * chunk)
                runs(index) { b, t, length, column in
                    winogradInputs(tile: m, upsampling: fusion.upsampling, image: b, tiles: t, length, channels: 0..<c,
                                   stride: strideV, ld: chunk, into: vp + column)
                }
                for e in computed {
                    // (O, C) x (C, count) -> (O, count) at tile position e
                    BLAS.sgemm(m: o, n: count, k: c, a: up + e * o * c, lda: c, b: vp + e * strideV, ldb: chunk,
                               c: mp + e * strideM, ldc: chunk, parallel: false)
                }
                runs(index) { b, t, length, column in
                    outputs(mp + column, strideM, length, chunk, t, tilesX, h, w, biasPointer,
                            residual.map { $0 + b * o * h * w }, relu, 0, o, out + b * o * h * w)
                }
            }
        }
    }
}

extension Tensor {
    /// Winograd's input transform F(tile x tile, 3x3) of tiles [first, first + count) of image `b`
    /// of this tensor, channels `channels`, into V (positions `stride` floats apart, rows of `ld`);
    /// with `upsampling`, of the tiles of its nearest 2x upsampling (F(2,3) only), read from it.
    func winogradInputs(tile m: Int, upsampling: Bool, image b: Int, tiles first: Int, _ count: Int, channels: Range<Int>,
                        stride: Int, ld: Int, into v: UnsafeMutablePointer<Float>) {
        let (c, h, w) = (shape[1], shape[2], shape[3])
        let image = pointer + b * c * h * w
        if upsampling {
            precondition(m == 2, "Winograd reads an upsampling's tiles for F(2,3) only")
            sdf_winograd23_inputs_upsampled(image, h, w, first, count, channels.lowerBound, channels.upperBound, stride, ld, v)
        } else {
            (m == 2 ? sdf_winograd23_inputs : sdf_winograd43_inputs)(image, h, w, (w + m - 1) / m, first, count,
                                                                     channels.lowerBound, channels.upperBound, stride, ld, v)
        }
    }
}

/// The geometry of one im2col unfolding.
struct Im2Col {
    let channels: Int, height: Int, width: Int
    let kernelHeight: Int, kernelWidth: Int
    let stride: Int
    let padding: Padding2D
    let outputHeight: Int, outputWidth: Int

    /// Writes rows (c, ky, kx) x columns (oy, ox) for output rows `rows` into `col`, whose row
    /// stride is `rowStride` (default `rows.count * outputWidth`). Parallel over input channels.
    func unfold(_ image: UnsafePointer<Float>, rows: Range<Int>, into col: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
        let bandWidth = rowStride ?? rows.count * outputWidth
        Parallel.forEach(channels) { ch in
            let plane = image + ch * height * width
            for ky in 0..<kernelHeight {
                for kx in 0..<kernelWidth {
                    let dstRow = col + ((ch * kernelHeight + ky) * kernelWidth + kx) * bandWidth
                    for (r, oy) in rows.enumerated() {
                        let dst = dstRow + r * outputWidth
                        let iy = oy * stride - padding.top + ky
                        guard iy >= 0 && iy < height else {
                            dst.update(repeating: 0, count: outputWidth)
                            continue
                        }
                        let src = plane + iy * width
                        let shift = kx - padding.left
                        if stride == 1 {
                            // Valid ox: 0 <= ox + shift < width.
                            let lo = Swift.max(0, -shift), hi = Swift.min(outputWidth, width - shift)
                            if lo > 0 { dst.update(repeating: 0, count: Swift.min(lo, outputWidth)) }
                            if hi > lo { (dst + lo).update(from: src + lo + shift, count: hi - lo) }
                            if hi < outputWidth {
                                let start = Swift.max(hi, 0)
                                (dst + start).update(repeating: 0, count: outputWidth - start)
                            }
                        } else {
                            for ox in 0..<outputWidth {
                                let ix = ox * stride + shift
                                dst[ox] = (ix >= 0 && ix < width) ? src[ix] : 0
                            }
                        }
                    }
                }
            }
        }
    }
}
