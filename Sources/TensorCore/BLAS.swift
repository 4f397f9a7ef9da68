import CKernels
import COpenBLAS
import Foundation

/// The arithmetic of `BLAS.sgemm`: exact float32, or operands rounded to bfloat16 with float32
/// accumulation (`sdf_gemm_bf16`: AMX tiles or AVX-512 BF16), about 3 significant digits per
/// product and up to twice (AMX: several times) the speed (`ComputeSettings.precision`).
public enum GEMMPrecision: String, Sendable, Codable {
    case float32
    case bfloat16

    /// Whether this CPU (under this thread's instruction-set cap) multiplies bfloat16 in hardware
    /// (elsewhere `bfloat16` is a slow portable loop).
    public static var bfloat16InHardware: Bool { sdf_gemm_bf16_available() != 0 }
}

/// The float32 GEMM kernels: OpenBLAS's, or ours with AVX-512 FMA (`sdf_gemm_f32`, Gemm.c). The raw
/// values are the names in `kernels.json` and `SDFLOW_SGEMM`.
public enum GemmKernel: String, Sendable, Codable, CaseIterable {
    case openBLAS = "openblas"
    case avx512

    /// The default for a loaded OpenBLAS core name and CPU: ours where the CPU has AVX-512 but
    /// OpenBLAS's loaded kernels do not use it (its core type pinned to AVX2 kernels by
    /// OPENBLAS_CORETYPE, or an OpenBLAS older than the CPU), else OpenBLAS.
    public static func standard(openBLASCore: String, cpuHasAVX512: Bool) -> GemmKernel {
        let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]
        return cpuHasAVX512 && !avx512Cores.contains(openBLASCore.lowercased()) ? .avx512 : .openBLAS
    }

    /// The kernels this CPU (under this thread's instruction-set cap) can run.
    public static var available: [GemmKernel] { sdf_gemm_f32_available() != 0 ? [.openBLAS, .avx512] : [.openBLAS] }
}

/// Typed wrapper over `cblas_sgemm` (row-major) that spreads large products over our threads.
///
/// OpenBLAS itself always runs single-threaded (see `Parallel`): its pthreads pool spins in
/// `sched_yield` between calls and takes cycles from our own parallel loops. Instead `sgemm`
/// splits C into column (or row) blocks and multiplies them concurrently. Kernels and precision
/// come from `ComputeSettings.current`.
public enum BLAS {
    /// Products below this many FLOPs run on one thread (with `ComputeSettings.smallFloat32Kernel`).
    @usableFromInline static let parallelFLOPs = 1 << 22

    /// The kernel set OpenBLAS chose when it loaded, e.g. "Zen", "Haswell", "SkylakeX".
    public static var openBLASCore: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, all row-major,
    /// where op(X) is X or its transpose. `lda`, `ldb`, `ldc` are row strides in elements.
    /// `parallel: false` keeps the product on the calling thread (inside parallel loops); `kernel`
    /// and `precision` override the settings' kernel and precision for this product (to time the candidates).
    @inlinable
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        parallel: Bool = true, kernel: GemmKernel? = nil, precision: GEMMPrecision? = nil
    ) {
        guard m > 0, n > 0 else { return }
        let settings = ComputeSettings.current
        let threads = settings.threads
        let small = 2 * m * n * k < parallelFLOPs
        let kernel = kernel ?? (small ? settings.smallFloat32Kernel : settings.float32Kernel), precision = precision ?? settings.precision
        guard parallel, threads > 1, !small else {
            return serial(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, kernel, precision)
        }
        if n >= m {
            // Column blocks (multiples of 16): each thread packs all of op(A) and its share of op(B).
            let block = (n / threads + 15) / 16 * 16
            Parallel.forEach((n + block - 1) / block) { i in
                let j = i * block, width = Swift.min(block, n - j)
                serial(transposeA, transposeB, m, width, k, alpha, a, lda, b + (transposeB ? j * ldb : j), ldb, beta, c + j, ldc, kernel, precision)
            }
        } else {
            // Row blocks (multiples of 8): each thread packs all of op(B) and its share of op(A).
            let block = (m / threads + 7) / 8 * 8
            Parallel.forEach((m + block - 1) / block) { i in
                let r = i * block, height = Swift.min(block, m - r)
                serial(transposeA, transposeB, height, n, k, alpha, a + (transposeA ? r : r * lda), lda, b, ldb, beta, c + r * ldc, ldc, kernel, precision)
            }
        }
    }

    @usableFromInline
    static func serial(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                       _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ kernel: GemmKernel, _ precision: GEMMPrecision) {
        // Rounding packs both operands into bfloat16 pairs; for thin products (the UNet's 8x8
        // convolutions, time embeddings) converting the weights costs more than it saves. (Even
        // on AMX tiles, thin products stay in float32: the fast mode's error stays as measured.)
        if precision == .bfloat16 && m >= 16 && n >= 128 {
            let status = sdf_gemm_bf16(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            precondition(status == 0, "sgemm: out of memory for the bfloat16 packing buffers")
            return
        }
        if kernel == .avx512 {
            let status = sdf_gemm_f32(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            precondition(status == 0, "sgemm: out of memory for the packing buffers")
            return
        }
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }
}
