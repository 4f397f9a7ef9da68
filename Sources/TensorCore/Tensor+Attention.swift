import CKernels

// MARK: - Softmax

extension Tensor {
    /// Softmax over the last axis, computed stably (the row maximum is subtracted first).
    public func softmax() -> Tensor {
        let width = shape[rank - 1]
        var result = copied()
        let p = result.mutablePointer()
        Parallel.forRanges(count / Swift.max(width, 1), minimumPerThread: Swift.max(1, 4096 / Swift.max(width, 1))) { range in
            for r in range { sdf_softmax(p + r * width, width) }
        }
        return result
    }
}

// MARK: - Attention

/// How one attention shape is computed (`KernelTuning.tuned` picks per shape): the fused kernels on
/// blocks of `queries` rows in float32 or bfloat16, or two `BLAS.sgemm` products per block of 256.
/// Named in `kernels.json` as "48", "48 bfloat16" and "gemm".
public enum AttentionVariant: TuningCandidate {
    case blocked(queries: Int, precision: GEMMPrecision)
    case gemm

    public init?(rawValue: String) {
        if rawValue == "gemm" {
            self = .gemm
            return
        }
        let words = rawValue.split(separator: " ")
        guard (1...2).contains(words.count), let queries = Int(words[0]), queries > 0 else { return nil }
        guard words.count == 1 || words[1] == "bfloat16" else { return nil }
        self = .blocked(queries: queries, precision: words.count == 2 ? .bfloat16 : .float32)
    }

    public var rawValue: String {
        switch self {
        case .gemm: "gemm"
        case .blocked(let queries, .float32): "\(queries)"
        case .blocked(let queries, .bfloat16): "\(queries) bfloat16"
        }
    }
}

extension Tensor {
    /// Multi-head scaled dot-product attention, softmax(Q K^T / sqrt(d)) V per head.
    ///
    /// query (B, T, C), key (B, S, C), value (B, S, Cv) -> (B, T, Cv), with the channels split
    /// into `heads` contiguous heads of C / heads (d) and Cv / heads each. With `causal`, query
    /// t attends to keys 0...t only (as in CLIP's text encoder).
    ///
    /// Each head's keys are packed into panels and its values padded once; then blocks of
    /// `queryChunk` query rows (default: the size measured fastest for the shape among 24, 48 and
    /// 96, `KernelTuning.tuned`; 48 unmeasured) are processed independently and in parallel: the
    /// block's scores (rows x S) by a register-blocked kernel, the softmax in place while the
    /// block is in cache, and the product with V by a second kernel. So a 4096-token
    /// self-attention never holds a 4096 x 4096 matrix: at most threads x block x S scores exist.
    /// `precision` (default `ComputeSettings.current.precision`) `.bfloat16` multiplies in bfloat16 where the CPU can
    /// (unless float32 measured faster for the shape).
    public static func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                 causal: Bool = false, queryChunk: Int? = nil, precision: GEMMPrecision? = nil) -> Tensor {
        precondition(query.rank == 3 && key.rank == 3 && value.rank == 3,
                     "attention expects (B, T, C) tensors, got \(query.shape), \(key.shape), \(value.shape)")
        let (batch, t, c) = (query.shape[0], query.shape[1], query.shape[2])
        let s = key.shape[1], cv = value.shape[2]
        precondition(key.shape[0] == batch && value.shape[0] == batch && key.shape[2] == c && value.shape[1] == s,
                     "attention: shapes \(query.shape), \(key.shape), \(value.shape) do not fit")
        precondition(c % heads == 0 && cv % heads == 0, "attention: \(c) channels not divisible by \(heads) heads")
        FLOPCounter.add(2 * Double(batch * heads) * Double(t) * Double(s) * Double(c / heads + cv / heads))
        let bf16 = (precision ?? ComputeSettings.current.precision) == .bfloat16 && GEMMPrecision.bfloat16InHardware
        if let queryChunk {
            return attention(query: query, key: key, value: value, heads: heads, causal: causal, queryChunk: queryChunk, bf16: bf16)
        }
        // The query block size measured fastest for this shape (`KernelTuning.tuned`), 48 where
        // nothing is measured; in bfloat16 also the float32 kernels, which are faster on CPUs
        // whose vdpbf16ps does no more than FMA (Intel Xeons).
        // Also "gemm": the two products as `BLAS.sgemm` calls on blocks of 256 queries, which
        // wins where the GEMM is much faster than the fused kernels (AMX tiles in the fast mode).
        let sizes = [48] + [96, 24].filter { $0 < t }
        let candidates = (bf16 ? sizes.map { AttentionVariant.blocked(queries: $0, precision: .bfloat16) } : [])
            + sizes.map { AttentionVariant.blocked(queries: $0, precision: .float32) } + (t >= 256 && s >= 256 ? [.gemm] : [])
        let shapeKey = "attention \(bf16 ? "bfloat16" : "float32") \(batch)x\(heads) heads, \(t) x \(s) tokens, d \(c / heads)/\(cv / heads)"
            + (causal ? " causal" : "")
        return KernelTuning.tuned(shapeKey, candidates: candidates) { variant in
            switch variant {
            case .gemm:
                return attentionByGEMM(query: query, key: key, value: value, heads: heads, causal: causal)
            case .blocked(let queries, let precision):
                return attention(query: query, key: key, value: value, heads: heads, causal: causal, queryChunk: queries,
                                 bf16: precision == .bfloat16)
            }
        }
    }

    /// `attention` as GEMMs: per (batch, head) and block of `block` queries, scores = Q K^T
    /// scaled (rows x S), the softmax's exponentials in place, then (rows x S) x V and the division
    /// by the row sums. Each thread holds one block's scores (256 x 4096 floats: 4 MB). The
    /// products run in `ComputeSettings.current.precision`.
    public static func attentionByGEMM(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool = false, block: Int = 256) -> Tensor {
        let (batch, t, c) = (query.shape[0], query.shape[1], query.shape[2])
        let s = key.shape[1], cv = value.shape[2]
        let d = c / heads, dv = cv / heads
        let scale = 1 / Float(d).squareRoot()
        var result = Tensor(uninitialized: [batch, t, cv])
        let out = result.mutablePointer()
        let q0 = query.pointer, k0 = key.pointer, v0 = value.pointer
        let blocks = (t + block - 1) / block
        Parallel.forRanges(batch * heads * blocks) { range in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: block * s)
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: block)
            defer { scores.deallocate(); sums.deallocate() }
            for job in range {
                let pair = job / blocks, t0 = (job % blocks) * block
                let rows = Swift.min(block, t - t0)
                let b = pair / heads, h = pair % heads
                // (rows, d) x (S, d)^T -> (rows, S), scaled
                BLAS.sgemm(transposeB: true, m: rows, n: s, k: d, alpha: scale, a: q0 + (b * t + t0) * c + h * d, lda: c,
                           b: k0 + b * s * c + h * d, ldb: c, c: scores, ldc: s, parallel: false)
                exponentiate(scores, rows: rows, stride: s, keys: s, causal: causal, firstQuery: t0, sums: sums)
                // (rows, S) x (S, dv) -> (rows, dv) in this head's columns, then normalised
                let target = out + (b * t + t0) * cv + h * dv
                BLAS.sgemm(m: rows, n: dv, k: s, a: scores, lda: s, b: v0 + b * s * cv + h * dv, ldb: cv, c: target, ldc: cv,
                           parallel: false)
                normalise(target, rows: rows, width: dv, stride: cv, sums: sums)
            }
        }
        return result
    }

    /// `attention` with its query block size decided.
    private static func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool, queryChunk: Int,
                                  bf16: Bool) -> Tensor {
        let (batch, t, c) = (query.shape[0], query.shape[1], query.shape[2])
        let s = key.shape[1], cv = value.shape[2]
        let d = c / heads, dv = cv / heads, dvPadded = (dv + 47) / 48 * 48
        let keyBlocks = (s + 31) / 32, stride = keyBlocks * 32 + 16  // rows padded off powers of two
        let scale = 1 / Float(d).squareRoot()
        var result = Tensor(uninitialized: [batch, t, cv])
        let out = result.mutablePointer()
        let q0 = query.pointer, k0 = key.pointer, v0 = value.pointer
        let pairs = batch * heads
        // The fast mode multiplies in bfloat16: operands are packed as pairs of 16-bit values
        // along the reduced axis (d for the scores, S for the values), one 32-bit word per pair.
        let keyWords = keyBlocks * 32 * (bf16 ? (d + 1) / 2 : d), valueWords = (bf16 ? (s + 1) / 2 : s) * dvPadded

        // Per (batch, head): the keys packed in panels of 32 and V padded to (S x dvPadded).
        let kp = UnsafeMutablePointer<Float>.allocate(capacity: pairs * keyWords)
        let vp = UnsafeMutablePointer<Float>.allocate(capacity: pairs * valueWords)
        defer { kp.deallocate(); vp.deallocate() }
        Parallel.forEach(pairs) { pair in
            let b = pair / heads, h = pair % heads
            let k = k0 + b * s * c + h * d, v = v0 + b * s * cv + h * dv
            let kpPair = kp + pair * keyWords, vpPair = vp + pair * valueWords
            if bf16 {
                sdf_attention_pack_keys_bf16(k, c, s, d, words(kpPair))
                sdf_attention_pack_values_bf16(v, cv, s, dv, dvPadded, words(vpPair))
                return
            }
            sdf_attention_pack_keys(k, c, s, d, kpPair)
            for j in 0..<s {
                let row = vpPair + j * dvPadded
                row.update(from: v + j * cv, count: dv)
                if dvPadded > dv { (row + dv).update(repeating: 0, count: dvPadded - dv) }
            }
        }

        // Blocks of query rows (a multiple of the kernels' 12- and 8-row tiles), in parallel.
        let chunk = Swift.max(1, Swift.min(t, queryChunk))
        let blocks = (t + chunk - 1) / chunk
        Parallel.forRanges(pairs * blocks) { range in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * stride)
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: bf16 ? 8 * ((s + 1) / 2) : 0)
            defer { scores.deallocate(); sums.deallocate(); scratch.deallocate() }
            for job in range {
                let pair = job / blocks, t0 = (job % blocks) * chunk
                let rows = Swift.min(chunk, t - t0)
                let b = pair / heads, h = pair % heads
                // (rows, d) x (d, S) -> (rows, S), scaled
                let q = q0 + (b * t + t0) * c + h * d
                if bf16 {
                    sdf_attention_scores_bf16(q, c, words(kp + pair * keyWords), d, rows, s, scale, scores, stride)
                } else {
                    sdf_attention_scores(q, c, kp + pair * keyWords, d, rows, s, scale, scores, stride)
                }
                // exp(scores - row max); the division by the row sums waits for the (rows, dv) result.
                exponentiate(scores, rows: rows, stride: stride, keys: s, causal: causal, firstQuery: t0, sums: sums)
                // (rows, S) x (S, dv) -> (rows, dv), written into this head's columns, then normalised
                let target = out + (b * t + t0) * cv + h * dv
                if bf16 {
                    sdf_attention_values_bf16(scores, stride, words(vp + pair * valueWords), dvPadded, s, rows, dv, target, cv, scratch)
                } else {
                    sdf_attention_values(scores, stride, vp + pair * valueWords, dvPadded, s, rows, dv, target, cv)
                }
                normalise(target, rows: rows, width: dv, stride: cv, sums: sums)
            }
        }
        return result
    }
}

/// exp(score - row maximum) in place for `rows` rows of `keys` scores (row stride `stride`), each
/// row's sum into `sums`. With `causal`, row r (query firstQuery + r) keeps keys 0...firstQuery + r
/// and the rest become zero.
private func exponentiate(_ scores: UnsafeMutablePointer<Float>, rows: Int, stride: Int, keys s: Int, causal: Bool, firstQuery t0: Int,
                          sums: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = scores + r * stride
        let visible = causal ? Swift.min(s, t0 + r + 1) : s
        sdf_softmax_exp(row, visible, sums + r)
        if visible < s { (row + visible).update(repeating: 0, count: s - visible) }
    }
}

/// Divides the first `width` values of each of `rows` rows (row stride `stride`) by the row's sum.
private func normalise(_ target: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int, sums: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let inverse = 1 / sums[r], row = target + r * stride
        for j in 0..<width { row[j] *= inverse }
    }
}

/// A float buffer seen as the 32-bit words of packed bfloat16 pairs.
private func words(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<UInt32> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: UInt32.self)
}
