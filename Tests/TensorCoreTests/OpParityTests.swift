import SafeTensors
import Foundation
import TensorCore
import TestSupport
import Testing

/// Every op against PyTorch's float32 output (Tests/Fixtures/ops.safetensors, written by
/// tools/reference/fixtures_ops.py). Tolerance: 1e-5 of the reference's largest magnitude.
@Suite struct OpParityTests {
    let file: SafeTensorsFile

    init() throws { file = try Fixtures.tensors("ops.safetensors") }

    func t(_ name: String) throws -> Tensor { try file.tensor(name) }

    func check(_ label: String, _ actual: Tensor, _ expected: Tensor, relative: Float = 1e-5) {
        #expect(actual.shape == expected.shape, "\(label): shape \(actual.shape) != \(expected.shape)")
        guard actual.shape == expected.shape else { return }
        let (error, scale) = parityReport(label, actual: actual, expected: expected)
        #expect(error <= relative * Swift.max(scale, 1), "\(label): max-abs error \(error) (reference max \(scale))")
    }

    @Test func linearAndMatmul() throws {
        check("linear", try t("linear.input").linear(weight: t("linear.weight"), bias: t("linear.bias")), try t("linear.output"))
        check("matmul", try t("matmul.input").matmul(t("matmul.other")), try t("matmul.output"))
        check("bmm", try t("bmm.input").batchedMatmul(t("bmm.other")), try t("bmm.output"))
        check("bmm_t", try t("bmm_t.input").batchedMatmul(t("bmm_t.other"), transposeOther: true), try t("bmm_t.output"))
    }

    @Test func convolutions() throws {
        let x = try t("conv3x3.input"), w = try t("conv3x3.weight"), b = try t("conv3x3.bias")
        check("conv3x3", x.conv2d(weight: w, bias: b, padding: .uniform(1)), try t("conv3x3.output"))
        check("conv3x3 stride 2", x.conv2d(weight: w, bias: b, stride: 2, padding: .uniform(1)), try t("conv3x3_s2.output"))
        check("conv3x3 stride 2 asymmetric",
              x.conv2d(weight: w, bias: b, stride: 2, padding: Padding2D(top: 0, bottom: 1, left: 0, right: 1)),
              try t("conv3x3_s2_asym.output"))
        check("conv1x1", x.conv2d(weight: try t("conv1x1.weight"), bias: b), try t("conv1x1.output"))
        let xl = try t("conv3x3_large.input"), wl = try t("conv3x3_large.weight"), bl = try t("conv3x3_large.bias")
        check("conv3x3 large", xl.conv2d(weight: wl, bias: bl, padding: .uniform(1)), try t("conv3x3_large.output"))
        // Every algorithm for 3x3 convolutions: Winograd F(2,3) (default), direct im2col, F(4,3) (fast mode).
        for mode in ConvolutionMode.allCases {
            check("conv3x3 \(mode)", x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode), try t("conv3x3.output"),
                  relative: mode == .fast ? 1e-4 : 1e-5)
            check("conv3x3 large \(mode)", xl.conv2d(weight: wl, bias: bl, padding: .uniform(1), mode: mode),
                  try t("conv3x3_large.output"), relative: mode == .fast ? 1e-4 : 1e-5)
            // Small chunks of tiles (or bands of rows) that start mid-row and span both images.
            check("conv3x3 \(mode) in chunks", x.conv2d(weight: w, bias: b, padding: .uniform(1), bandFloats: 7 * 36 * 6, mode: mode),
                  try t("conv3x3.output"), relative: mode == .fast ? 1e-4 : 1e-5)
            check("conv3x3 \(mode) one tile at a time", x.conv2d(weight: w, bias: b, padding: .uniform(1), bandFloats: 1, mode: mode),
                  try t("conv3x3.output"), relative: mode == .fast ? 1e-4 : 1e-5)
        }
        // A band budget of one output row forces the banded im2col path through every band.
        check("conv3x3 banded", xl.conv2d(weight: wl, bias: bl, padding: .uniform(1), bandFloats: 1, mode: .direct),
              try t("conv3x3_large.output"))
        // Winograd for narrow (at most 128 channels, one pipeline per thread) and wide convolutions,
        // against the direct (im2col) convolution, which the fixtures check against torch; rows of
        // 35 tiles take the AVX-512 input transform's blocks of 16 tiles and the rest after them.
        for channels in [64, 136] {
            for shape in [[2, channels, 12, 10], [1, channels, 9, 70]] {
                let count = shape.reduce(1, *)
                let xw = Tensor(shape: shape, values: (0..<count).map { sin(Float($0) * 0.013) })
                let ww = Tensor(shape: [channels, channels, 3, 3], values: (0..<(channels * channels * 9)).map { cos(Float($0) * 0.007) * 0.05 })
                let bw = Tensor(shape: [channels], values: (0..<channels).map { Float($0) * 0.01 })
                let direct = xw.conv2d(weight: ww, bias: bw, padding: .uniform(1), mode: .direct)
                for mode in [ConvolutionMode.winograd, .fast] {
                    let (error, scale) = parityReport("conv3x3 \(shape) \(mode) vs direct",
                                                      actual: xw.conv2d(weight: ww, bias: bw, padding: .uniform(1), mode: mode), expected: direct)
                    #expect(error <= (mode == .fast ? 1e-4 : 1e-5) * scale)
                }
            }
        }
    }

    /// 3x3 convolutions with 1 to 4 outputs (a decoder's last layer) are direct multiply-adds:
    /// against a convolution summed in double precision here, for widths and heights of 1 pixel and
    /// rows longer than a vector, with and without bias, residual and ReLU; 5 outputs take im2col.
    @Test func fewOutputConvolutions() {
        for (o, h, w, withBias) in [(3, 9, 35, true), (1, 1, 1, true), (2, 1, 5, false), (4, 6, 2, true), (3, 2, 16, false), (5, 4, 19, true)] {
            let (n, c) = (2, 7)
            let x = Tensor(shape: [n, c, h, w], values: (0..<(n * c * h * w)).map { sin(Float($0) * 0.37) })
            let weight = Tensor(shape: [o, c, 3, 3], values: (0..<(o * c * 9)).map { cos(Float($0) * 0.11) * 0.2 })
            let bias = withBias ? Tensor(shape: [o], values: (0..<o).map { Float($0) * 0.1 - 0.15 }) : nil
            var expected = [Float](repeating: 0, count: n * o * h * w)
            for b in 0..<n { for k in 0..<o { for y in 0..<h { for x0 in 0..<w {
                var sum = Double(bias?.scalars[k] ?? 0)
                for ch in 0..<c { for ky in 0..<3 { for kx in 0..<3 {
                    let (iy, ix) = (y + ky - 1, x0 + kx - 1)
                    guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                    sum += Double(weight.scalars[((k * c + ch) * 3 + ky) * 3 + kx]) * Double(x.scalars[((b * c + ch) * h + iy) * w + ix])
                }}}
                expected[((b * o + k) * h + y) * w + x0] = Float(sum)
            }}}}
            let label = "\(o) outputs, \(h)x\(w)"
            check(label, x.conv2d(weight: weight, bias: bias, padding: .uniform(1), mode: .direct),
                  Tensor(shape: [n, o, h, w], values: expected), relative: 1e-6)
            let residual = Tensor(shape: [n, o, h, w], values: (0..<(n * o * h * w)).map { cos(Float($0) * 0.3) })
            check(label + " + residual, ReLU",
                  x.conv2d(weight: weight, bias: bias, padding: .uniform(1), mode: .direct, residual: residual, relu: true),
                  Tensor(shape: [n, o, h, w], values: zip(expected, residual.scalars).map { Swift.max($0 + $1, 0) }), relative: 1e-6)
            check(label + " (chosen)", x.conv2d(weight: weight, bias: bias, padding: .uniform(1)),
                  Tensor(shape: [n, o, h, w], values: expected), relative: 1e-6)
        }
    }

    /// Convolutions of images stored channels last (TAESD's decoder) against the channels-first
    /// ones: 3x3 by Winograd with and without upsampling, residual and ReLU, for odd sizes, batches
    /// and channel counts that are not multiples of a vector; 1x1; and the last layer's few outputs.
    @Test(arguments: [(4, 64), (64, 64), (19, 5), (64, 3)])
    func channelsLastConvolutions(inputs c: Int, outputs o: Int) {
        for (n, h, w) in [(2, 5, 19), (1, 16, 35), (1, 1, 1)] {
            let x = Tensor(shape: [n, c, h, w], values: (0..<(n * c * h * w)).map { sin(Float($0) * 0.013) })
            let weight = Tensor(shape: [o, c, 3, 3], values: (0..<(o * c * 9)).map { cos(Float($0) * 0.007) * 0.05 })
            let bias = Tensor(shape: [o], values: (0..<o).map { Float($0) * 0.01 - 0.3 })
            let last = x.channelsLast()
            #expect(last.shape == [n, h, w, c] && last.channelsFirst().scalars == x.scalars)
            for upsampling in [false, true] {
                let (oh, ow) = upsampling ? (2 * h, 2 * w) : (h, w)
                let residual = Tensor(shape: [n, o, oh, ow], values: (0..<(n * o * oh * ow)).map { cos(Float($0) * 0.023) })
                let label = "\(c) -> \(o), \(n)x\(h)x\(w)\(upsampling ? " upsampled" : "")"
                let expected = x.conv2d(weight: weight, bias: bias, padding: .uniform(1), mode: .direct, upsampling: upsampling)
                check(label, last.conv3x3ChannelsLast(weight: weight, bias: bias, upsampling: upsampling).channelsFirst(), expected)
                let fused = x.conv2d(weight: weight, bias: bias, padding: .uniform(1), mode: .direct, residual: residual, relu: true,
                                     upsampling: upsampling)
                check(label + " + residual, ReLU",
                      last.conv3x3ChannelsLast(weight: weight, bias: bias, residual: residual.channelsLast(), relu: true,
                                               upsampling: upsampling).channelsFirst(), fused)
            }
            check("\(c) -> \(o) few outputs, \(n)x\(h)x\(w)", last.conv3x3FewOutputsChannelsLast(weight: weight, bias: bias),
                  x.conv2d(weight: weight, bias: bias, padding: .uniform(1), mode: .direct))
            let pointwise = Tensor(shape: [o, c, 1, 1], values: (0..<(o * c)).map { sin(Float($0) * 0.05) })
            for b in [bias, nil] {
                check("\(c) -> \(o) 1x1", last.conv1x1ChannelsLast(weight: pointwise, bias: b).channelsFirst(),
                      x.conv2d(weight: pointwise, bias: b))
            }
        }
    }

    /// Channels-last convolutions (F(2x3,3x3)) are about as accurate as a direct float32 convolution
    /// (im2col and GEMM) and F(2x2), against the convolution summed in double precision, on ReLU'd
    /// inputs like TAESD's.
    @Test func channelsLastAccuracy() {
        let (c, o, h, w) = (64, 64, 10, 17)
        let x = Tensor(shape: [1, c, h, w], values: (0..<(c * h * w)).map { Swift.max(0, sin(Float($0) * 0.7) * 3) })
        let weight = Tensor(shape: [o, c, 3, 3], values: (0..<(o * c * 9)).map { sin(Float($0) * 1.3 + 0.2) / 24 })
        var expected = [Float](repeating: 0, count: o * h * w)
        for k in 0..<o { for y in 0..<h { for x0 in 0..<w {
            var sum = 0.0
            for ch in 0..<c { for ky in 0..<3 { for kx in 0..<3 {
                let (iy, ix) = (y + ky - 1, x0 + kx - 1)
                guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                sum += Double(weight.scalars[((k * c + ch) * 3 + ky) * 3 + kx]) * Double(x.scalars[(ch * h + iy) * w + ix])
            }}}
            expected[(k * h + y) * w + x0] = Float(sum)
        }}}
        let reference = Tensor(shape: [1, o, h, w], values: expected)
        let actual = x.channelsLast().conv3x3ChannelsLast(weight: weight, bias: nil).channelsFirst()
        let direct = parityReport("im2col float32 vs double", actual: x.conv2d(weight: weight, bias: nil, padding: .uniform(1), mode: .direct),
                                  expected: reference).error
        let winograd = parityReport("F(2x2) vs double", actual: x.conv2d(weight: weight, bias: nil, padding: .uniform(1), mode: .winograd),
                                    expected: reference).error
        let (error, scale) = parityReport("channels last F(2x3) vs double", actual: actual, expected: reference)
        #expect(error <= 2 * Swift.max(direct, winograd) && error <= 1e-5 * scale)
    }

    /// The convolution of an upsampling computed from the small tensor (Winograd F(2,3) reads its
    /// tiles from it and skips 7 of their 16 positions) equals the convolution of the upsampling
    /// made, in every mode, with and without a residual and ReLU, for odd sizes and batches.
    @Test(arguments: [64, 136])
    func convolutionOfAnUpsampling(channels: Int) {
        let shape = [2, channels, 5, 19], count = shape.reduce(1, *)
        let x = Tensor(shape: shape, values: (0..<count).map { sin(Float($0) * 0.019) })
        let w = Tensor(shape: [channels, channels, 3, 3], values: (0..<(channels * channels * 9)).map { cos(Float($0) * 0.007) * 0.05 })
        let b = Tensor(shape: [channels], values: (0..<channels).map { Float($0) * 0.01 - 0.3 })
        let residual = Tensor(shape: [2, channels, 10, 38], values: (0..<(4 * count)).map { cos(Float($0) * 0.023) })
        let upsampled = x.upsampledNearest2x()
        for mode in ConvolutionMode.allCases {
            let plain = upsampled.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode)
            #expect(x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode, upsampling: true).scalars == plain.scalars, "\(mode)")
            let fused = upsampled.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode, residual: residual, relu: true)
            #expect(x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode, residual: residual, relu: true, upsampling: true).scalars
                    == fused.scalars, "\(mode) with a residual and ReLU")
        }
        // Without a mode: the measured or default choice, and a 1x1 convolution (upsampled first).
        #expect(x.conv2d(weight: w, bias: b, padding: .uniform(1), upsampling: true).shape == [2, channels, 10, 38])
        let pointwise = Tensor(shape: [3, channels, 1, 1], values: (0..<(3 * channels)).map { Float($0) * 0.01 })
        #expect(x.conv2d(weight: pointwise, bias: nil, upsampling: true).scalars == upsampled.conv2d(weight: pointwise, bias: nil).scalars)
    }

    /// A residual and ReLU after the convolution, fused (Winograd's output transform) or not
    /// (im2col), equal the separate ops.
    @Test(arguments: [64, 136])
    func convolutionEpilogue(channels: Int) {
        let shape = [2, channels, 9, 38], count = shape.reduce(1, *)
        let x = Tensor(shape: shape, values: (0..<count).map { sin(Float($0) * 0.011) })
        let residual = Tensor(shape: shape, values: (0..<count).map { cos(Float($0) * 0.017) })
        let w = Tensor(shape: [channels, channels, 3, 3], values: (0..<(channels * channels * 9)).map { cos(Float($0) * 0.007) * 0.05 })
        let b = Tensor(shape: [channels], values: (0..<channels).map { Float($0) * 0.01 - 0.3 })
        for mode in ConvolutionMode.allCases {
            var expected = x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode)
            expected.applyReLU()
            #expect(x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode, relu: true).scalars == expected.scalars)
            expected = x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode)
            expected += residual
            expected.applyReLU()
            let fused = x.conv2d(weight: w, bias: b, padding: .uniform(1), mode: mode, residual: residual, relu: true)
            #expect(fused.scalars == expected.scalars, "\(mode): residual and ReLU")
            #expect(fused.scalars.contains(0) && fused.scalars.contains { $0 > 0 })
        }
    }

    @Test func normalisation() throws {
        let x = try t("groupnorm.input"), w = try t("groupnorm.weight"), b = try t("groupnorm.bias")
        check("groupnorm", x.groupNorm(groups: 4, weight: w, bias: b, epsilon: 1e-6), try t("groupnorm.output"))
        check("groupnorm+silu", x.groupNorm(groups: 4, weight: w, bias: b, epsilon: 1e-6, fusedSiLU: true),
              try t("groupnorm.output_silu"))
        check("layernorm", try t("layernorm.input").layerNorm(weight: t("layernorm.weight"), bias: t("layernorm.bias"), epsilon: 1e-5),
              try t("layernorm.output"))
    }

    @Test func softmaxAndAttention() throws {
        check("softmax", try t("softmax.input").softmax(), try t("softmax.output"))
        let attention = Tensor.attention(query: try t("attention.query"), key: try t("attention.key"),
                                         value: try t("attention.value"), heads: 4)
        check("attention", attention, try t("attention.output"))
        let chunked = Tensor.attention(query: try t("attention.query"), key: try t("attention.key"),
                                       value: try t("attention.value"), heads: 4, queryChunk: 4)
        check("attention chunked", chunked, try t("attention.output"))
        // Large enough for the parallel path (heads in parallel, single-threaded BLAS, 64-row blocks).
        let large = Tensor.attention(query: try t("attention_large.query"), key: try t("attention_large.key"),
                                     value: try t("attention_large.value"), heads: 4)
        check("attention parallel", large, try t("attention_large.output"))
        let s = try t("attention_causal.query")
        check("attention causal", Tensor.attention(query: s, key: s, value: s, heads: 2, causal: true),
              try t("attention_causal.output"))
        check("attention causal chunked", Tensor.attention(query: s, key: s, value: s, heads: 2, causal: true, queryChunk: 3),
              try t("attention_causal.output"))
        // The GEMM variant (KernelTuning's "gemm" candidate), with whole and partial blocks.
        check("attention gemm", Tensor.attentionByGEMM(query: try t("attention_large.query"), key: try t("attention_large.key"),
                                                       value: try t("attention_large.value"), heads: 4), try t("attention_large.output"))
        check("attention gemm blocks", Tensor.attentionByGEMM(query: try t("attention.query"), key: try t("attention.key"),
                                                              value: try t("attention.value"), heads: 4, causal: false, block: 3),
              try t("attention.output"))
        check("attention gemm causal", Tensor.attentionByGEMM(query: s, key: s, value: s, heads: 2, causal: true, block: 3),
              try t("attention_causal.output"))
    }

    /// The fast mode's attention (bfloat16 operands, float32 sums) against PyTorch's float32: close,
    /// not equal (bfloat16 keeps 8 significant bits).
    @Test(.enabled(if: GEMMPrecision.bfloat16InHardware, "needs AVX-512 BF16")) func bfloat16Attention() throws {
        let (q, k, v) = (try t("attention_large.query"), try t("attention_large.key"), try t("attention_large.value"))
        check("attention bf16", Tensor.attention(query: q, key: k, value: v, heads: 4, precision: .bfloat16),
              try t("attention_large.output"), relative: 2e-2)
        let s = try t("attention_causal.query")
        check("attention causal bf16", Tensor.attention(query: s, key: s, value: s, heads: 2, causal: true, queryChunk: 3, precision: .bfloat16),
              try t("attention_causal.output"), relative: 2e-2)
    }

    @Test func activations() throws {
        let x = try t("activations.input")
        check("silu", x.silu(), try t("activations.silu"))
        check("gelu", x.gelu(), try t("activations.gelu"))
        check("quick_gelu", x.quickGELU(), try t("activations.quick_gelu"))
        check("geglu", try t("geglu.input").geglu(), try t("geglu.output"))
    }

    @Test func shapeAndResampling() throws {
        check("upsample", try t("upsample.input").upsampledNearest2x(), try t("upsample.output"))
        check("concat", Tensor.concatenate([try t("concat.first"), try t("concat.second")], axis: 1), try t("concat.output"))
        let x = try t("broadcast.input")
        check("broadcast add", x + (try t("broadcast.channel")), try t("broadcast.add"))
        check("broadcast mul", x * (try t("broadcast.row")), try t("broadcast.mul"))
        check("avgpool", try t("avgpool.input").averagePooled2x(), try t("avgpool.output"))
        check("transpose", try t("transpose.input").transposedLastTwo(), try t("transpose.output"))
        let whole = try t("concat.output")
        let parts = whole.chunked(2, axis: 1)
        #expect(parts.map(\.shape) == [[2, 4, 4, 5], [2, 4, 4, 5]])
        #expect(Tensor.concatenate(parts, axis: 1).maxAbsDifference(whole) == 0)
    }

    @Test(arguments: [32, 320])
    func timestepEmbedding(dimension: Int) throws {
        let steps = try t("timestep\(dimension).timesteps").scalars
        // sin(t f) moves by t * ulp(f) when exp rounds f differently from the reference (1 ulp,
        // about 1% of frequencies); at t = 999 that is 6e-5, so the tolerance is two such ulps.
        let ulpBound = 2 * (steps.max() ?? 1) * Float.ulpOfOne / 2
        check("timestep embedding \(dimension)", Tensor.timestepEmbedding(steps, dimension: dimension),
              try t("timestep\(dimension).output"), relative: Swift.max(1e-5, ulpBound))
    }
}
