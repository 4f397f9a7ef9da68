import CKernels
import TensorCore
import Testing

@Suite struct TensorTests {
    @Test func reshapeAndSliceAreViews() {
        let t = Tensor(shape: [2, 3, 2], values: (0..<12).map(Float.init))
        let r = t.reshaped([3, -1])
        #expect(r.shape == [3, 4])
        #expect(r[2, 3] == 11)
        let second = t.slice(1..<2)
        #expect(second.shape == [1, 3, 2])
        #expect(second.scalars == [6, 7, 8, 9, 10, 11])
        #expect(t.pointer + 6 == second.pointer)
    }

    @Test func copyOnWrite() {
        let a = Tensor(shape: [4], values: [1, 2, 3, 4])
        var b = a
        b.withUnsafeMutableBufferPointer { $0[0] = 10 }
        #expect(a.scalars == [1, 2, 3, 4])
        #expect(b.scalars == [10, 2, 3, 4])
        var view = a.slice(2..<4)
        view.withUnsafeMutableBufferPointer { $0[0] = 30 }
        #expect(a.scalars == [1, 2, 3, 4])
        #expect(view.scalars == [30, 4])
    }

    @Test func borrowedMemoryIsNeverWritten() {
        let values: [Float] = [1, 2, 3]
        let owner = values as AnyObject
        values.withUnsafeBufferPointer { buffer in
            var t = Tensor(shape: [3], borrowing: buffer.baseAddress!, owner: owner)
            t.apply { $0 * 2 }
            #expect(t.scalars == [2, 4, 6])
        }
        #expect(values == [1, 2, 3])
    }

    @Test func threadCountIsSettable() {
        var settings = ComputeSettings.current
        settings.threads = 1
        let x = Tensor(shape: [3, 5], values: (0..<15).map { Float($0) - 7 })
        let single = settings.run {
            #expect(Parallel.threadCount == 1)
            return x.silu()
        }
        #expect(x.silu().maxAbsDifference(single) == 0)
    }

    /// The transpose's 8 x 8 register blocks and its edges: every element lands in its place.
    @Test func transposeOfEveryShape() {
        for (batch, m, n) in [(1, 1, 1), (2, 8, 8), (3, 37, 19), (2, 64, 45), (1, 5, 130)] {
            let x = Tensor(shape: [batch, m, n], values: (0..<(batch * m * n)).map { Float($0) })
            let t = x.transposedLastTwo()
            #expect(t.shape == [batch, n, m])
            var wrong = 0
            for b in 0..<batch {
                for i in 0..<m { for j in 0..<n where t.pointer[(b * n + j) * m + i] != x.pointer[(b * m + i) * n + j] { wrong += 1 } }
            }
            #expect(wrong == 0, "\(batch) x \(m) x \(n): \(wrong) misplaced")
        }
    }

    @Test func maxAbsDifferenceSeesNaN() {
        let a = Tensor(shape: [2], values: [1, .nan]), b = Tensor(shape: [2], values: [1, 2])
        #expect(a.maxAbsDifference(b).isNaN)
    }

    /// Large products are split into blocks over the threads; every split must equal one call.
    @Test func parallelGEMMMatchesOneCall() {
        var seed: UInt32 = 1
        func random(_ count: Int) -> [Float] {
            (0..<count).map { _ in seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 8) / Float(1 << 24) - 0.5 }
        }
        // (m, n, k): row blocks (m > n) and column blocks (n >= m), with and without transposes.
        for (m, n, k) in [(300, 131, 70), (70, 301, 257)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = random(m * k), b = random(k * n)
                var split = [Float](repeating: 0, count: m * n), single = split
                let (lda, ldb) = (ta ? m : k, tb ? k : n)
                BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &split, ldc: n)
                BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &single, ldc: n,
                           parallel: false)
                let worst = zip(split, single).map { abs($0 - $1) }.max()!
                #expect(worst <= 1e-5, "m \(m) n \(n) k \(k) transposes \(ta) \(tb): \(worst)")
            }
        }
    }

    /// Our AVX-512 float32 GEMM replaces OpenBLAS only where the CPU has AVX-512 and OpenBLAS's
    /// kernels do not use it.
    @Test func float32KernelChoice() {
        #expect(GemmKernel.standard(openBLASCore: "Haswell", cpuHasAVX512: true) == .avx512)
        #expect(GemmKernel.standard(openBLASCore: "Zen", cpuHasAVX512: true) == .avx512)
        #expect(GemmKernel.standard(openBLASCore: "Zen", cpuHasAVX512: false) == .openBLAS)
        for core in ["SkylakeX", "Cooperlake", "SapphireRapids"] {
            #expect(GemmKernel.standard(openBLASCore: core, cpuHasAVX512: true) == .openBLAS)
        }
        #expect(!BLAS.openBLASCore.isEmpty)
    }

    /// The AVX-512 float32 GEMM equals a double-precision product (up to float32 summation) for
    /// every transpose, edge tiles, several k slices, alpha and beta.
    @Test(.enabled(if: sdf_gemm_f32_available() != 0, "needs AVX-512"))
    func float32GEMMMatchesReference() {
        checkGEMM(sdf_gemm_f32, sizes: [(25, 70, 777), (12, 32, 2), (1, 1, 1), (100, 45, 256), (97, 4100, 3)]) { Double($0) }
    }

    /// The bfloat16 GEMM equals a double-precision product of the bfloat16-rounded operands (up to
    /// float32 summation), for every transpose, edge tiles, k slices with an odd tail, alpha and beta.
    /// On CPUs with AMX that is the AMX kernel (32-row tiles, k padded to 32, 512-k slices), so
    /// the AVX-512 BF16 kernel is checked on its own as well.
    @Test func bfloat16GEMMMatchesRoundedReference() {
        let sizes = [(25, 70, 777), (12, 32, 2), (1, 1, 1), (100, 45, 384), (150, 33, 1100)]
        checkGEMM(sdf_gemm_bf16, sizes: sizes, rounded: bfloat16)
        if sdf_gemm_bf16_available() != 0 { checkGEMM(sdf_gemm_bf16_avx512, sizes: sizes, rounded: bfloat16) }
    }

    /// x rounded to bfloat16 (nearest even), as a double.
    private func bfloat16(_ x: Float) -> Double {
        let bits = x.bitPattern
        return Double(Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000))
    }

    /// Runs `gemm` (the C signature of sdf_gemm_f32 / sdf_gemm_bf16) on random operands of every
    /// size, transpose, alpha and beta, and compares with a double-precision product of the
    /// operands as `rounded`; the error is relative to the sum of the products' magnitudes.
    func checkGEMM(_ gemm: (Int32, Int32, Int, Int, Int, Float, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int, Float,
                            UnsafeMutablePointer<Float>, Int) -> Int32,
                   sizes: [(Int, Int, Int)], rounded: (Float) -> Double) {
        var seed: UInt32 = 7
        func random(_ count: Int) -> [Float] {
            (0..<count).map { _ in seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 8) / Float(1 << 24) - 0.5 }
        }
        for (m, n, k) in sizes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1)] {
                    let a = random(m * k), b = random(k * n), c0 = random(m * n)
                    let (lda, ldb) = (ta ? m : k, tb ? k : n)
                    var c = beta == 0 ? [Float](repeating: .nan, count: m * n) : c0  // beta 0 never reads C
                    #expect(gemm(ta ? 1 : 0, tb ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, &c, n) == 0)
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var sum = 0.0, magnitude = 0.0
                            for p in 0..<k {
                                let product = rounded(ta ? a[p * lda + i] : a[i * lda + p]) * rounded(tb ? b[j * ldb + p] : b[p * ldb + j])
                                sum += product
                                magnitude += abs(product)
                            }
                            let expected = Double(alpha) * sum + Double(beta) * Double(c0[i * n + j])
                            worst = max(worst, abs(Double(c[i * n + j]) - expected) / (magnitude + 1))
                        }
                    }
                    #expect(worst <= 1e-6, "m \(m) n \(n) k \(k) transposes \(ta) \(tb) alpha \(alpha) beta \(beta): \(worst)")
                }
            }
        }
    }

    @Test func pooledBuffersAreZeroedOnRequest() {
        let shape = [1 << 19]  // 2 MB, pooled
        do {
            var x = Tensor(uninitialized: shape)
            x.mutablePointer().update(repeating: 1, count: x.count)
        }
        let zeros = Tensor(zeros: shape)
        #expect((0..<zeros.count).allSatisfy { zeros.pointer[$0] == 0 })
        #expect(BufferPool.keptBytes <= BufferPool.capacity)
    }
}
