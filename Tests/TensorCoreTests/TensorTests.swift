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
        let before = Parallel.threadCount
        Parallel.setThreadCount(1)
        #expect(Parallel.threadCount == 1)
        let x = Tensor(shape: [3, 5], values: (0..<15).map { Float($0) - 7 })
        let single = x.silu()
        Parallel.setThreadCount(before)
        #expect(x.silu().maxAbsDifference(single) == 0)
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
