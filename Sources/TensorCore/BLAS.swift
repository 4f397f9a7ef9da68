import COpenBLAS

/// Thin, typed wrapper over `cblas_sgemm` (row-major).
public enum BLAS {
    /// Runs `body` with OpenBLAS limited to one thread, for loops that call sgemm from several
    /// threads at once (each call then runs on its caller's core), and restores the count after.
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(Parallel.threadCount)) }
        return try body()
    }

    /// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, all row-major,
    /// where op(X) is X or its transpose. `lda`, `ldb`, `ldc` are row strides in elements.
    @inlinable
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }
}
