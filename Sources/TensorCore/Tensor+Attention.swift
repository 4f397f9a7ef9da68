import CKernels

// MARK: - Softmax

extension Tensor {
    /// Softmax over the last axis, computed stably (the row maximum is subtracted first).
    public func softmax() -> Tensor {
        let width = shape[rank - 1]
        var result = copied()
        let p = result.mutablePointer()
        Parallel.forRanges(count / Swift.max(width, 1), minimumPerThread: Swift.max(1, 4096 / Swift.max(width, 1))) { range in
            for r in range { Softmax.row(p + r * width, count: width) }
        }
        return result
    }
}

enum Softmax {
    /// In-place softmax of `count` contiguous floats.
    @inline(__always)
    static func row(_ p: UnsafeMutablePointer<Float>, count: Int) { sdf_softmax(p, count) }
}

// MARK: - Attention

extension Tensor {
    /// Multi-head scaled dot-product attention, softmax(Q K^T / sqrt(d)) V per head.
    ///
    /// query (B, T, C), key (B, S, C), value (B, S, Cv) -> (B, T, Cv), with the channels split
    /// into `heads` contiguous heads of C / heads (d) and Cv / heads each. With `causal`, query
    /// t attends to keys 0...t only (as in CLIP's text encoder).
    ///
    /// Heads are read in place (row stride C), so no transposes are made. Queries are taken a
    /// block of rows at a time: the block's scores (rows x S) are computed by one GEMM, turned
    /// into probabilities in place while they are in cache, and multiplied with V by a second
    /// GEMM, so a 4096-token self-attention never holds a 4096 x 4096 matrix. The (batch, head)
    /// pairs run in parallel, each with single-threaded BLAS; `queryChunk` sets the block size
    /// (default: 64 rows when there are enough pairs to share the cores, else up to 16 MB).
    public static func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                 causal: Bool = false, queryChunk: Int? = nil) -> Tensor {
        precondition(query.rank == 3 && key.rank == 3 && value.rank == 3,
                     "attention expects (B, T, C) tensors, got \(query.shape), \(key.shape), \(value.shape)")
        let (batch, t, c) = (query.shape[0], query.shape[1], query.shape[2])
        let s = key.shape[1], cv = value.shape[2]
        precondition(key.shape[0] == batch && value.shape[0] == batch && key.shape[2] == c && value.shape[1] == s,
                     "attention: shapes \(query.shape), \(key.shape), \(value.shape) do not fit")
        precondition(c % heads == 0 && cv % heads == 0, "attention: \(c) channels not divisible by \(heads) heads")
        let d = c / heads, dv = cv / heads
        let scale = 1 / Float(d).squareRoot()
        FLOPCounter.add(2 * Double(batch * heads) * Double(t) * Double(s) * Double(d + dv))
        var result = Tensor(uninitialized: [batch, t, cv])
        let out = result.mutablePointer()
        let q0 = query.pointer, k0 = key.pointer, v0 = value.pointer
        let pairs = batch * heads

        /// One (batch, head) pair over query rows [t0, t0 + rows) with `scores` as scratch (rows x S).
        func block(_ pair: Int, _ t0: Int, _ rows: Int, _ scores: UnsafeMutablePointer<Float>, parallelSoftmax: Bool) {
            let b = pair / heads, h = pair % heads
            let q = q0 + b * t * c + h * d, k = k0 + b * s * c + h * d, v = v0 + b * s * cv + h * dv
            // (rows, d) x (S, d)^T -> (rows, S)
            BLAS.sgemm(transposeB: true, m: rows, n: s, k: d, alpha: scale, a: q + t0 * c, lda: c, b: k, ldb: c, c: scores, ldc: s)
            let softmax = { (range: Range<Int>) in
                for r in range {
                    let row = scores + r * s
                    let visible = causal ? Swift.min(s, t0 + r + 1) : s
                    Softmax.row(row, count: visible)
                    if visible < s { (row + visible).update(repeating: 0, count: s - visible) }
                }
            }
            if parallelSoftmax {
                Parallel.forRanges(rows, minimumPerThread: Swift.max(1, 4096 / Swift.max(s, 1)), softmax)
            } else {
                softmax(0..<rows)
            }
            // (rows, S) x (S, dv) -> (rows, dv), written into this head's columns
            BLAS.sgemm(m: rows, n: dv, k: s, a: scores, lda: s, b: v, ldb: cv, c: out + (b * t + t0) * cv + h * dv, ldc: cv)
        }

        let threads = Parallel.threadCount
        if pairs >= threads && threads > 1 && t * s >= 1 << 16 {
            // Pairs in parallel, one BLAS thread each, small blocks that stay in cache.
            let chunk = Swift.max(1, Swift.min(t, queryChunk ?? 64))
            BLAS.singleThreaded {
                Parallel.forRanges(pairs) { range in
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * s)
                    defer { scores.deallocate() }
                    for pair in range {
                        var t0 = 0
                        while t0 < t {
                            let rows = Swift.min(chunk, t - t0)
                            block(pair, t0, rows, scores, parallelSoftmax: false)
                            t0 += rows
                        }
                    }
                }
            }
        } else {
            let chunk = Swift.max(1, Swift.min(t, queryChunk ?? Swift.max(1, (4 << 20) / Swift.max(s, 1))))
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * s)
            defer { scores.deallocate() }
            for pair in 0..<pairs {
                var t0 = 0
                while t0 < t {
                    let rows = Swift.min(chunk, t - t0)
                    block(pair, t0, rows, scores, parallelSoftmax: true)
                    t0 += rows
                }
            }
        }
        return result
    }
}
