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
    /// Heads are read in place (row stride C), so no transposes are made. Queries are taken
    /// `queryChunk` rows at a time, so at most queryChunk x S scores exist at once; by default
    /// the chunk keeps that under 16 MB, so 4096-token self-attention never holds a full
    /// 4096 x 4096 matrix.
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
        let chunk = Swift.max(1, Swift.min(t, queryChunk ?? Swift.max(1, (4 << 20) / Swift.max(s, 1))))

        var result = Tensor(uninitialized: [batch, t, cv])
        let out = result.mutablePointer()
        var scores = Tensor(uninitialized: [chunk, s])
        let p = scores.mutablePointer()
        for b in 0..<batch {
            for h in 0..<heads {
                let q = query.pointer + b * t * c + h * d
                let k = key.pointer + b * s * c + h * d
                let v = value.pointer + b * s * cv + h * dv
                var t0 = 0
                while t0 < t {
                    let rows = Swift.min(chunk, t - t0)
                    // (rows, d) x (S, d)^T -> (rows, S)
                    BLAS.sgemm(transposeB: true, m: rows, n: s, k: d, alpha: scale,
                               a: q + t0 * c, lda: c, b: k, ldb: c, c: p, ldc: s)
                    let firstRow = t0
                    Parallel.forRanges(rows, minimumPerThread: Swift.max(1, 4096 / Swift.max(s, 1))) { range in
                        for r in range {
                            let row = p + r * s
                            if causal {
                                let visible = Swift.min(s, firstRow + r + 1)
                                Softmax.row(row, count: visible)
                                if visible < s { (row + visible).update(repeating: 0, count: s - visible) }
                            } else {
                                Softmax.row(row, count: s)
                            }
                        }
                    }
                    // (rows, S) x (S, dv) -> (rows, dv), written into this head's columns
                    BLAS.sgemm(m: rows, n: dv, k: s, a: p, lda: s, b: v, ldb: cv,
                               c: out + (b * t + t0) * cv + h * dv, ldc: cv)
                    t0 += rows
                }
            }
        }
        return result
    }
}
