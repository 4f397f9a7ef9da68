// MARK: - Matrix products

extension Tensor {
    /// Matrix product over the last two axes: (..., M, K) x (K, N) -> (..., M, N).
    public func matmul(_ other: Tensor) -> Tensor {
        precondition(rank >= 2 && other.rank == 2 && shape[rank - 1] == other.shape[0],
                     "matmul: shapes \(shape) and \(other.shape) do not multiply")
        let k = shape[rank - 1], n = other.shape[1]
        let m = count / Swift.max(k, 1)
        FLOPCounter.add(2 * Double(m) * Double(n) * Double(k))
        var outShape = shape
        outShape[rank - 1] = n
        var result = Tensor(uninitialized: outShape)
        BLAS.sgemm(m: m, n: n, k: k, a: pointer, lda: k, b: other.pointer, ldb: n,
                   c: result.mutablePointer(), ldc: n)
        return result
    }

    /// Batched matrix product: (B, M, K) x (B, K, N) -> (B, M, N), or with `transposeOther`
    /// (B, M, K) x (B, N, K)^T -> (B, M, N).
    public func batchedMatmul(_ other: Tensor, transposeOther: Bool = false) -> Tensor {
        precondition(rank == 3 && other.rank == 3 && shape[0] == other.shape[0],
                     "batchedMatmul: shapes \(shape) and \(other.shape)")
        let batch = shape[0], m = shape[1], k = shape[2]
        let n = transposeOther ? other.shape[1] : other.shape[2]
        precondition((transposeOther ? other.shape[2] : other.shape[1]) == k,
                     "batchedMatmul: inner dimensions of \(shape) and \(other.shape) differ")
        FLOPCounter.add(2 * Double(batch * m) * Double(n) * Double(k))
        var result = Tensor(uninitialized: [batch, m, n])
        let c = result.mutablePointer()
        for b in 0..<batch {
            BLAS.sgemm(transposeB: transposeOther, m: m, n: n, k: k,
                       a: pointer + b * m * k, lda: k,
                       b: other.pointer + b * k * n, ldb: transposeOther ? k : n,
                       c: c + b * m * n, ldc: n)
        }
        return result
    }

    /// A fully connected layer as in `torch.nn.Linear`: (..., In) -> (..., Out),
    /// with `weight` of shape (Out, In) and an optional `bias` of shape (Out).
    public func linear(weight: Tensor, bias: Tensor?) -> Tensor {
        let inFeatures = shape[rank - 1]
        precondition(weight.rank == 2 && weight.shape[1] == inFeatures,
                     "linear: input \(shape) does not match weight \(weight.shape)")
        let outFeatures = weight.shape[0]
        let rows = count / Swift.max(inFeatures, 1)
        FLOPCounter.add(2 * Double(rows) * Double(inFeatures) * Double(outFeatures))
        var outShape = shape
        outShape[rank - 1] = outFeatures
        var result = Tensor(uninitialized: outShape)
        let c = result.mutablePointer()
        var beta: Float = 0
        if let bias {
            precondition(bias.count == outFeatures, "linear: bias \(bias.shape) for \(outFeatures) outputs")
            let b = bias.pointer
            Parallel.forRanges(rows, minimumPerThread: Swift.max(1, 16384 / Swift.max(outFeatures, 1))) { range in
                for r in range { (c + r * outFeatures).update(from: b, count: outFeatures) }
            }
            beta = 1
        }
        // (rows, In) x (Out, In)^T -> (rows, Out)
        BLAS.sgemm(transposeB: true, m: rows, n: outFeatures, k: inFeatures,
                   a: pointer, lda: inFeatures, b: weight.pointer, ldb: inFeatures,
                   beta: beta, c: c, ldc: outFeatures)
        return result
    }
}
