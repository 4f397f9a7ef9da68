import CKernels

// Images stored channels last, (N, H, W, C): a pixel's channels are contiguous. TAESD's decoder
// runs in this layout between its input and its last convolution: Winograd's transforms then
// work across channels in whole aligned vectors and read long runs of memory, where across the
// tiles of channels-first rows they need unaligned loads and permutes (they took about a quarter
// of a TAESD decode). Its convolutions use Winograd F(2x3,3x3), about as accurate as a float32
// im2col convolution (`conv3x3ChannelsLast`).

extension Tensor {
    /// (N, C, H, W) -> the same images channels last, (N, H, W, C).
    public func channelsLast() -> Tensor {
        precondition(rank == 4, "channelsLast: \(shape) is not (N, C, H, W)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        return imagesTransposed(rows: c, columns: h * w, into: [n, h, w, c])
    }

    /// (N, H, W, C) channels last -> (N, C, H, W).
    public func channelsFirst() -> Tensor {
        precondition(rank == 4, "channelsFirst: \(shape) is not (N, H, W, C)")
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        return imagesTransposed(rows: h * w, columns: c, into: [n, c, h, w])
    }

    /// Each image of the batch, a (rows x columns) matrix, transposed, as a tensor of `shape`.
    private func imagesTransposed(rows: Int, columns: Int, into shape: [Int]) -> Tensor {
        var result = Tensor(uninitialized: shape)
        let out = result.mutablePointer(), size = rows * columns
        for b in 0..<self.shape[0] {
            Parallel.forRanges(rows) { r in sdf_transpose(pointer + b * size, rows, columns, r.lowerBound, r.upperBound, out + b * size) }
        }
        return result
    }

    /// 3x3 convolution, stride 1, padding 1, of images stored channels last: (N, H, W, C) * weight
    /// (O, C, 3, 3) + bias (O) -> (N, H, W, O), plus `residual` (the output's shape), then ReLU
    /// when asked; with `upsampling`, of the nearest 2x upsampling of this tensor, (N, 2H, 2W, O).
    /// Winograd with each thread running all three steps on chunks of tiles that stay in its L2
    /// cache: V (positions, tiles, C), one GEMM per position V x U (C, O), M (positions, tiles, O).
    /// F(2x3,3x3) (20 products per 6 outputs; see Winograd.c for its accuracy), or for an upsampling
    /// F(2x2,3x3) reading its tiles from this tensor and skipping the 7 of 16 positions that are zero, as `conv2d`.
    public func conv3x3ChannelsLast(weight: Tensor, bias: Tensor?, residual: Tensor? = nil, relu: Bool = false,
                                    upsampling: Bool = false) -> Tensor {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let o = weight.shape[0], scale = upsampling ? 2 : 1
        let (oh, ow) = (scale * h, scale * w)
        precondition(rank == 4 && weight.shape == [o, c, 3, 3], "conv3x3ChannelsLast: input \(shape) does not match weight \(weight.shape)")
        if let bias { precondition(bias.count == o, "conv3x3ChannelsLast: bias \(bias.shape) for \(o) output channels") }
        if let residual { precondition(residual.shape == [n, oh, ow, o], "conv3x3ChannelsLast: residual \(residual.shape) for output \([n, oh, ow, o])") }
        FLOPCounter.add(2 * Double(n * o * oh * ow) * Double(c * 9))

        // Output tiles of 2 rows and `tileWidth` columns from input tiles of 4 x (tileWidth + 2).
        let tileWidth = upsampling ? 2 : 3, positions = 4 * (tileWidth + 2)
        var u = Tensor(uninitialized: [positions, c, o])  // the transformed filters
        let up = u.mutablePointer(), wp = weight.pointer
        Parallel.forRanges(o) { r in sdf_winograd_filters_nhwc(wp, o, c, tileWidth + 2, r.lowerBound, r.upperBound, up) }

        let tilesX = (ow + tileWidth - 1) / tileWidth, tilesPerImage = ((oh + 1) / 2) * tilesX
        let chunk = Swift.max(1, Swift.min(tilesPerImage, (64 << 10) / (positions * Swift.max(c, o))))  // V and M about 256 KB each
        let chunksPerImage = (tilesPerImage + chunk - 1) / chunk
        // Positions one cache line further apart than their rows need (see `winograd3x3Narrow`).
        let strideV = chunk * c + 16, strideM = chunk * o + 16
        let computed = upsampling ? Fusion(residual: nil, relu: false, upsampling: true).computedPositions(tile: 2) : Array(0..<positions)
        var result = Tensor(uninitialized: [n, oh, ow, o])
        let out = result.mutablePointer(), input = pointer, biasPointer = bias?.pointer, residualPointer = residual?.pointer
        let zero = [Float](repeating: 0, count: c)
        zero.withUnsafeBufferPointer { zeroPixel in
            Parallel.forRanges(n * chunksPerImage) { range in
                let vp = UnsafeMutablePointer<Float>.allocate(capacity: positions * strideV)
                let mp = UnsafeMutablePointer<Float>.allocate(capacity: positions * strideM)
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 12 * o)  // for outputs beyond the image
                scratch.initialize(repeating: 0, count: 12 * o)
                defer { vp.deallocate(); mp.deallocate(); scratch.deallocate() }
                if computed.count < positions { mp.initialize(repeating: 0, count: positions * strideM) }  // the skipped positions' products
                for index in range {
                    let b = index / chunksPerImage, first = (index % chunksPerImage) * chunk
                    let count = Swift.min(chunk, tilesPerImage - first)
                    let image = input + b * h * w * c, outputImage = b * oh * ow * o
                    if upsampling {
                        sdf_winograd23_inputs_nhwc(image, h, w, c, 1, first, count, zeroPixel.baseAddress, strideV, vp)
                    } else {
                        sdf_winograd2x3_inputs_nhwc(image, h, w, c, first, count, zeroPixel.baseAddress, strideV, vp)
                    }
                    for e in computed {
                        // (tiles, C) x (C, O) -> (tiles, O) at tile position e
                        BLAS.sgemm(m: count, n: o, k: c, a: vp + e * strideV, lda: c, b: up + e * c * o, ldb: o,
                                   c: mp + e * strideM, ldc: o, parallel: false)
                    }
                    let outputs = upsampling ? sdf_winograd23_outputs_nhwc : sdf_winograd2x3_outputs_nhwc
                    outputs(mp, strideM, first, count, oh, ow, o, biasPointer, residualPointer.map { $0 + outputImage }, relu ? 1 : 0,
                            scratch, out + outputImage)
                }
            }
        }
        withExtendedLifetime(u) {}  // up points into it
        return result
    }

    /// 1x1 convolution of images stored channels last: (N, H, W, C) * weight (O, C, 1, 1) + bias
    /// -> (N, H, W, O), one GEMM: (N*H*W, C) x (C, O).
    public func conv1x1ChannelsLast(weight: Tensor, bias: Tensor?) -> Tensor {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let o = weight.shape[0]
        precondition(rank == 4 && weight.shape == [o, c, 1, 1], "conv1x1ChannelsLast: input \(shape) does not match weight \(weight.shape)")
        FLOPCounter.add(2 * Double(n * h * w * o * c))
        var result = Tensor(uninitialized: [n, h, w, o])
        let out = result.mutablePointer(), pixels = n * h * w
        if let bias {
            Parallel.forRanges(pixels) { r in for p in r { (out + p * o).update(from: bias.pointer, count: o) } }
        }
        BLAS.sgemm(transposeB: true, m: pixels, n: o, k: c, a: pointer, lda: c, b: weight.pointer, ldb: c,
                   beta: bias == nil ? 0 : 1, c: out, ldc: o)
        return result
    }

    /// 3x3 convolution, stride 1, padding 1, of images stored channels last into images stored
    /// channels first: (N, H, W, C) * weight (O, C, 3, 3) + bias -> (N, O, H, W), by direct
    /// multiply-adds: for a decoder's last layer (a few output channels, RGB).
    public func conv3x3FewOutputsChannelsLast(weight: Tensor, bias: Tensor?) -> Tensor {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let o = weight.shape[0]
        precondition(rank == 4 && weight.shape == [o, c, 3, 3], "conv3x3FewOutputsChannelsLast: input \(shape) does not match weight \(weight.shape)")
        if let bias { precondition(bias.count == o, "conv3x3FewOutputsChannelsLast: bias \(bias.shape) for \(o) output channels") }
        FLOPCounter.add(2 * Double(n * o * h * w) * Double(c * 9))
        // (O, C, 3, 3) -> (O, 3, 3, C)
        var taps = Tensor(uninitialized: [o, 3, 3, c])
        let tp = taps.mutablePointer()
        for k in 0..<o { sdf_transpose(weight.pointer + k * c * 9, c, 9, 0, c, tp + k * 9 * c) }
        var result = Tensor(uninitialized: [n, o, h, w])
        let out = result.mutablePointer(), input = pointer, biasPointer = bias?.pointer
        Tensor.forEachRowBand(images: n, height: h) { b, rows in
            sdf_conv3x3_few_nhwc(input + b * h * w * c, c, h, w, tp, o, biasPointer, rows.lowerBound, rows.upperBound, out + b * o * h * w)
        }
        withExtendedLifetime(taps) {}  // tp points into it
        return result
    }
}
