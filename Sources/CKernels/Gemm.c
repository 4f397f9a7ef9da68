// Single-precision GEMMs of our own, for where OpenBLAS is not the fastest choice:
// - float32 with AVX-512 FMA, for CPUs with AVX-512 whose OpenBLAS runs AVX2 kernels (an
//   OPENBLAS_CORETYPE pin, or an OpenBLAS older than the CPU);
// - bfloat16 products with float32 accumulation (fast mode) on CPUs with AVX-512 BF16
//   (vdpbf16ps: 32 multiply-adds per instruction, twice FMA's rate).
//
// - bfloat16 products on Intel's AMX tiles (Sapphire Rapids and later: one tdpbf16ps does
//   16 x 16 x 32 multiply-adds), chosen over vdpbf16ps where the CPU has them.
//
// One Goto-style driver serves all: for each KC slice of k and NC block of columns, B is
// packed into panels of NR = 32 columns (L1 while a panel is used); for each MC block of rows
// A is packed into panels of MR = 12 rows (L2); a 12 x 32 microkernel keeps 24 zmm
// accumulators (AMX: panels of 32 rows, a 32 x 32 block in four tiles). Panels hold 32-bit
// words: floats, or bfloat16 pairs along k (a lane holds (x[k], x[k+1]) rounded to nearest
// even, x[k] in the low half, the layout vdpbf16ps and tdpbf16ps read). Edges are zero-padded
// in the panels and written through a small buffer.
#include "CKernels.h"
#include "BF16.h"
#include "Dispatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if SDF_X86
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define MR 12
#define NR 32
#define MC 96
#define NC 4096

int sdf_gemm_bf16_available(void) {
#if SDF_X86
    return sdf_isa_cap >= SDF_ISA_AVX512_BF16 && sdf_cpu_avx512() && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

// float32 -> bfloat16 bits, rounded to nearest even, in the high half of a 32-bit word.
SDF_INLINE uint32_t bf16_high(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    return (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
}

// The pair (x0, x1) as one 32-bit lane: x0 in the low half, x1 in the high half.
SDF_INLINE uint32_t bf16_pair(float x0, float x1) { return bf16_high(x1) | (bf16_high(x0) >> 16); }

// A[i][p] of op(A) (m x k) and B[p][j] of op(B) (k x n), for row-major storage.
SDF_INLINE float at(const float *x, long ld, int transposed, long row, long col) {
    return transposed ? x[col * ld + row] : x[row * ld + col];
}

// Rows [i0, i0 + rows) and k range [p0, p0 + kc) of op(A) -> panels of mr rows, each row's
// pairs contiguous: panel r holds words[mr][depth] (depth >= ceil(kc / 2)); rows beyond `rows`,
// the odd k tail and pairs beyond ceil(kc / 2) are zero.
static void pack_a_generic(const float *a, long lda, int ta, long i0, long rows, long p0, long kc, long depth, long mr, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    for (long r = 0; r < (rows + mr - 1) / mr * mr; r++) {
        uint32_t *dst = out + r * depth;
        memset(dst, 0, (size_t)depth * 4);
        if (r >= rows) continue;
        for (long q = 0; q < pairs; q++) {
            long p = p0 + 2 * q;
            float x1 = 2 * q + 1 < kc ? at(a, lda, ta, i0 + r, p + 1) : 0;
            dst[q] = bf16_pair(at(a, lda, ta, i0 + r, p), x1);
        }
    }
}

// Columns [j0, j0 + cols) and k range [p0, p0 + kc) of op(B) -> panels of NR columns: panel c
// holds words[depth][NR]; columns beyond `cols`, the odd k tail and pairs beyond ceil(kc / 2) are zero.
static void pack_b_generic(const float *b, long ldb, int tb, long j0, long cols, long p0, long kc, long depth, long mr, uint32_t *out) {
    (void)mr;
    long pairs = (kc + 1) / 2;
    for (long c = 0; c < cols; c += NR) {
        uint32_t *panel = out + (c / NR) * depth * NR;
        long width = cols - c < NR ? cols - c : NR;
        memset(panel, 0, (size_t)(depth * NR) * 4);
        for (long q = 0; q < pairs; q++) {
            long p = p0 + 2 * q;
            uint32_t *dst = panel + q * NR;
            for (long j = 0; j < width; j++) {
                float x1 = 2 * q + 1 < kc ? at(b, ldb, tb, p + 1, j0 + c + j) : 0;
                dst[j] = bf16_pair(at(b, ldb, tb, p, j0 + c + j), x1);
            }
        }
    }
}

#if SDF_X86
// pack_a_generic for row-major A (pairs along k are adjacent floats).
SDF_BF16 static void pack_a_rows(const float *a, long lda, long i0, long rows, long p0, long kc, long depth, long mr, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    for (long r = 0; r < (rows + mr - 1) / mr * mr; r++) {
        uint32_t *dst = out + r * depth;
        if (r < rows) {
            sdf_bf16_row(a + (i0 + r) * lda + p0, kc, dst);
            if (depth > pairs) memset(dst + pairs, 0, (size_t)(depth - pairs) * 4);
        } else {
            memset(dst, 0, (size_t)depth * 4);
        }
    }
}

// pack_b_generic for row-major B: rows p and p + 1 are read as two streams and interleaved.
SDF_BF16 static void pack_b_rows(const float *b, long ldb, long j0, long cols, long p0, long kc, long depth, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    for (long c = 0; c < cols; c += NR) {
        for (long q = pairs; q < depth; q++) memset(out + (c / NR) * depth * NR + q * NR, 0, NR * 4);
    }
    for (long q = 0; q < pairs; q++) {
        const float *r0 = b + (p0 + 2 * q) * ldb + j0;
        int second = 2 * q + 1 < kc;
        for (long c = 0; c < cols; c += 16) {
            long n = cols - c < 16 ? cols - c : 16;
            __mmask16 mask = (__mmask16)((1u << n) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(mask, r0 + c);
            __m512 x1 = second ? _mm512_maskz_loadu_ps(mask, r0 + ldb + c) : _mm512_setzero_ps();
            __m512i v = sdf_bf16_interleave(x0, x1);
            // Columns [c, c + 16) live in panel c / NR at column offset c % NR (zero beyond `cols`).
            _mm512_storeu_si512(out + (c / NR) * depth * NR + q * NR + c % NR, v);
        }
        if (cols % NR && cols % NR <= 16) {
            // The last panel's second half of 16 columns is all padding.
            _mm512_storeu_si512(out + (cols / NR) * depth * NR + q * NR + 16, _mm512_setzero_si512());
        }
    }
}

// pack_b_generic for B given transposed (B[p][j] = b[j * ldb + p], a linear layer's weight):
// each column's pairs are adjacent floats, converted 16 at a time and stored with stride NR.
SDF_BF16 static void pack_b_columns(const float *b, long ldb, long j0, long cols, long p0, long kc, long depth, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    int odd = kc & 1;
    for (long j = 0; j < (cols + NR - 1) / NR * NR; j++) {
        uint32_t *panel = out + (j / NR) * depth * NR + j % NR;
        for (long q = j < cols ? pairs : 0; q < depth; q++) panel[q * NR] = 0;
        if (j >= cols) continue;
        const float *src = b + (j0 + j) * ldb + p0;
        for (long q = 0; q < pairs; q += 16) {
            long n = pairs - q < 16 ? pairs - q : 16;
            uint32_t row[16];
            _mm512_storeu_si512(row, sdf_bf16_pairs(src + 2 * q, n, odd && q + n == pairs));
            for (long t = 0; t < n; t++) panel[(q + t) * NR] = row[t];
        }
    }
}
#endif

#if SDF_X86
SDF_BF16 static void pack_a_bf16(const float *a, long lda, int ta, long i0, long rows, long p0, long kc, long depth, long mr, uint32_t *out) {
    if (ta) pack_a_generic(a, lda, ta, i0, rows, p0, kc, depth, mr, out);
    else pack_a_rows(a, lda, i0, rows, p0, kc, depth, mr, out);
}

SDF_BF16 static void pack_b_bf16(const float *b, long ldb, int tb, long j0, long cols, long p0, long kc, long depth, long mr, uint32_t *out) {
    (void)mr;
    if (tb) pack_b_columns(b, ldb, j0, cols, p0, kc, depth, out);
    else pack_b_rows(b, ldb, j0, cols, p0, kc, depth, out);
}
#endif

// acc (rows x NR, row-major) -> C rows/cols within bounds: C = alpha * acc + beta * C.
static void store_tile(const float *acc, long rows, long cols, float alpha, float beta, float *c, long ldc) {
    for (long i = 0; i < rows; i++) {
        for (long j = 0; j < cols; j++) {
            float v = alpha * acc[i * NR + j];
            c[i * ldc + j] = beta == 0 ? v : v + beta * c[i * ldc + j];
        }
    }
}

#if SDF_X86
// The 12 x 32 accumulators (rows of c0 | c1) -> C = alpha * acc + beta * C, within rows x cols.
__attribute__((target("avx512f"))) SDF_INLINE void store_accumulators(
    const __m512 *c0, const __m512 *c1, float alpha, float beta, float *c, long ldc, long rows, long cols) {
    if (rows == MR && cols == NR) {
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        SDF_UNROLL for (int i = 0; i < MR; i++) {
            __m512 r0 = _mm512_mul_ps(c0[i], va), r1 = _mm512_mul_ps(c1[i], va);
            if (beta != 0) {
                r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + i * ldc), r0);
                r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + i * ldc + 16), r1);
            }
            _mm512_storeu_ps(c + i * ldc, r0);
            _mm512_storeu_ps(c + i * ldc + 16, r1);
        }
        return;
    }
    float acc[MR * NR];
    SDF_UNROLL for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(acc + i * NR, c0[i]);
        _mm512_storeu_ps(acc + i * NR + 16, c1[i]);
    }
    store_tile(acc, rows, cols, alpha, beta, c, ldc);
}

// float32: rows [i0, i0 + rows) x k range [p0, p0 + kc) of op(A) -> panels of MR rows, each
// row's kc values contiguous ([MR][kc], as the bfloat16 panels); zero beyond `rows`.
SDF_AVX512 static void pack_a_f32(const float *a, long lda, int ta, long i0, long rows, long p0, long kc, long depth, long mr,
                                  uint32_t *words) {
    (void)depth;  // kc: float panels hold every k
    float *out = (float *)words;
    for (long r = 0; r < (rows + mr - 1) / mr * mr; r++) {
        float *dst = out + r * kc;
        if (r >= rows) memset(dst, 0, (size_t)kc * 4);
        else if (!ta) memcpy(dst, a + (i0 + r) * lda + p0, (size_t)kc * 4);
        else for (long p = 0; p < kc; p++) dst[p] = a[(p0 + p) * lda + i0 + r];
    }
}

// float32: columns [j0, j0 + cols) x k range [p0, p0 + kc) of op(B) -> panels [kc][NR]; zero beyond `cols`.
SDF_AVX512 static void pack_b_f32(const float *b, long ldb, int tb, long j0, long cols, long p0, long kc, long depth, long mr,
                                  uint32_t *words) {
    (void)depth, (void)mr;
    float *out = (float *)words;
    for (long c0 = 0; c0 < cols; c0 += NR) {
        float *panel = out + (c0 / NR) * kc * NR;
        long width = cols - c0 < NR ? cols - c0 : NR;
        if (width < NR) memset(panel, 0, (size_t)(kc * NR) * 4);
        if (tb) {
            // Each column's k values are adjacent floats.
            for (long j = 0; j < width; j++) {
                const float *src = b + (j0 + c0 + j) * ldb + p0;
                for (long p = 0; p < kc; p++) panel[p * NR + j] = src[p];
            }
        } else {
            for (long p = 0; p < kc; p++) memcpy(panel + p * NR, b + (p0 + p) * ldb + j0 + c0, (size_t)width * 4);
        }
    }
}

// float32 12 x 32 tile over kc: per k two B loads and 12 broadcasts (one per A row) feed 24 FMAs.
SDF_AVX512 static void micro_avx512f32(
    const uint32_t *a_words, const uint32_t *b_words, long kc, float alpha, float beta, float *c, long ldc, long rows, long cols) {
    const float *ap = (const float *)a_words, *bp = (const float *)b_words;
    __m512 c0[MR], c1[MR];
    SDF_UNROLL for (int i = 0; i < MR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(bp + p * NR), b1 = _mm512_loadu_ps(bp + p * NR + 16);
        SDF_UNROLL for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(ap[i * kc + p]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    store_accumulators(c0, c1, alpha, beta, c, ldc, rows, cols);
}

// 12 x 32 tile over `pairs` k-pairs: per pair two B loads and 12 broadcasts (one per A row) feed 24 vdpbf16ps.
SDF_BF16 static void micro_avx512bf16(
    const uint32_t *ap, const uint32_t *bp, long pairs, float alpha, float beta, float *c, long ldc, long rows, long cols) {
    __m512 c0[MR], c1[MR];
    SDF_UNROLL for (int i = 0; i < MR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long q = 0; q < pairs; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + q * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + q * NR + 16);
        SDF_UNROLL for (int i = 0; i < MR; i++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[i * pairs + q]);
            c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
        }
    }
    store_accumulators(c0, c1, alpha, beta, c, ldc, rows, cols);
}

// AMX: tiles 0-3 hold the 32 x 32 block of C in float32 (rows 0-15 | 16-31 x columns 0-15 |
// 16-31), tiles 4-5 A's two 16-row halves and 6-7 B's two 16-column halves, each 16 rows of
// 64 bytes (16 pairs); the panels' depth is a multiple of 16 pairs.
#define SDF_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))
#define AMX_MR 32

struct amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

SDF_AMX static void amx_begin(void) {
    struct amx_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
}

SDF_AMX static void amx_end(void) { _tile_release(); }

SDF_AMX static void micro_amx(const uint32_t *ap, const uint32_t *bp, long depth, float alpha, float beta, float *c, long ldc,
                              long rows, long cols) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long q = 0; q < depth; q += 16) {
        _tile_loadd(4, ap + q, depth * 4);
        _tile_loadd(5, ap + 16 * depth + q, depth * 4);
        _tile_loadd(6, bp + q * NR, NR * 4);
        _tile_loadd(7, bp + q * NR + 16, NR * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float acc[AMX_MR * NR];
    _tile_stored(0, acc, NR * 4);
    _tile_stored(1, acc + 16, NR * 4);
    _tile_stored(2, acc + 16 * NR, NR * 4);
    _tile_stored(3, acc + 16 * NR + 16, NR * 4);
    store_tile(acc, rows, cols, alpha, beta, c, ldc);
}

// AMX-TILE and AMX-BF16 in CPUID leaf 7 (EDX bits 24 and 22), and Linux's permission to use
// the tile data (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA), asked for once.
static int amx_usable(void) {
    static int state = -1;
    if (state < 0) {
        unsigned eax = 7, ebx = 0, ecx = 0, edx = 0;
        __asm__("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
        int cpu = (edx >> 24 & 1) && (edx >> 22 & 1) && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
        state = cpu && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
    }
    return state;
}
#endif

// Portable microkernel with the same rounding (bf16 products are exact in float32; only the
// summation order differs from vdpbf16ps). Used where AVX-512 BF16 is missing (tests).
static void micro_generic(const uint32_t *ap, const uint32_t *bp, long pairs, float alpha, float beta, float *c, long ldc,
                          long rows, long cols) {
    float acc[MR * NR] = {0};
    for (long q = 0; q < pairs; q++) {
        SDF_UNROLL for (int i = 0; i < MR; i++) {
            uint32_t pa = ap[i * pairs + q];
            uint32_t lo_bits = pa << 16, hi_bits = pa & 0xFFFF0000u;
            float a0, a1;
            memcpy(&a0, &lo_bits, 4);
            memcpy(&a1, &hi_bits, 4);
            SDF_UNROLL for (int j = 0; j < NR; j++) {
                uint32_t pb = bp[q * NR + j], b_lo = pb << 16, b_hi = pb & 0xFFFF0000u;
                float b0, b1;
                memcpy(&b0, &b_lo, 4);
                memcpy(&b1, &b_hi, 4);
                acc[i * NR + j] += a0 * b0 + a1 * b1;
            }
        }
    }
    store_tile(acc, rows, cols, alpha, beta, c, ldc);
}

// Packing buffers, one pair per thread, grown as needed (the Swift side calls from its pool).
static _Thread_local uint32_t *a_buffer, *b_buffer;
static _Thread_local size_t a_capacity, b_capacity;

static uint32_t *reserve(uint32_t **buffer, size_t *capacity, size_t words) {
    if (words > *capacity) {
        free(*buffer);
        *buffer = aligned_alloc(64, (words * 4 + 63) / 64 * 64);
        *capacity = *buffer ? words : 0;
    }
    return *buffer;
}

// One element type: its packing, microkernel, block sizes and whether panels hold bfloat16 pairs.
// Packing writes `depth` words per row of a panel (zero beyond the slice) and pads A to `mr` rows.
typedef void (*pack_fn)(const float *x, long ld, int transposed, long first, long count, long p0, long kc, long depth, long mr,
                        uint32_t *out);
typedef void (*micro_fn)(const uint32_t *ap, const uint32_t *bp, long depth, float alpha, float beta, float *c, long ldc,
                         long rows, long cols);
struct gemm_kernel {
    pack_fn pack_a, pack_b;
    micro_fn micro;
    long kc;          // k per slice
    long mr, mc;      // rows per microkernel tile and per packed block of A
    int pairs;        // panels hold pairs along k: depth = ceil(kc / 2) words, rounded up to
    long depth_step;  // a multiple of this
    void (*begin)(void), (*end)(void);  // per call on the calling thread (AMX tile configuration), or NULL
};

static int gemm(const struct gemm_kernel *kernel, int trans_a, int trans_b, long m, long n, long k, float alpha,
                const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return 0;
    }
    long mr = kernel->mr, mc = kernel->mc, step = kernel->depth_step;
    long ncap = n < NC ? n : NC, mcap = m < mc ? m : mc;
    long max_depth = ((kernel->pairs ? (kernel->kc + 1) / 2 : kernel->kc) + step - 1) / step * step;
    uint32_t *bp = reserve(&b_buffer, &b_capacity, (size_t)((ncap + NR - 1) / NR * NR) * max_depth);
    uint32_t *ap = reserve(&a_buffer, &a_capacity, (size_t)((mcap + mr - 1) / mr * mr) * max_depth);
    if (!bp || !ap) return -1;
    if (kernel->begin) kernel->begin();
    for (long p0 = 0; p0 < k; p0 += kernel->kc) {
        long kc = k - p0 < kernel->kc ? k - p0 : kernel->kc;
        long depth = ((kernel->pairs ? (kc + 1) / 2 : kc) + step - 1) / step * step;
        float step_beta = p0 == 0 ? beta : 1;  // later k slices accumulate onto C
        for (long j0 = 0; j0 < n; j0 += NC) {
            long cols = n - j0 < NC ? n - j0 : NC;
            kernel->pack_b(b, ldb, trans_b, j0, cols, p0, kc, depth, mr, bp);
            for (long i0 = 0; i0 < m; i0 += mc) {
                long rows = m - i0 < mc ? m - i0 : mc;
                kernel->pack_a(a, lda, trans_a, i0, rows, p0, kc, depth, mr, ap);
                for (long jc = 0; jc < cols; jc += NR) {
                    const uint32_t *bpanel = bp + (jc / NR) * depth * NR;
                    long tile_cols = cols - jc < NR ? cols - jc : NR;
                    for (long ic = 0; ic < rows; ic += mr) {
                        long tile_rows = rows - ic < mr ? rows - ic : mr;
                        kernel->micro(ap + (ic / mr) * depth * mr, bpanel, depth, alpha, step_beta,
                                      c + (i0 + ic) * ldc + j0 + jc, ldc, tile_rows, tile_cols);
                    }
                }
            }
        }
    }
    if (kernel->end) kernel->end();
    return 0;
}

int sdf_gemm_bf16(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                  long ldb, float beta, float *c, long ldc) {
    static const struct gemm_kernel portable = {pack_a_generic, pack_b_generic, micro_generic, 384, MR, MC, 1, 1, NULL, NULL};
#if SDF_X86
    static const struct gemm_kernel amx = {pack_a_bf16, pack_b_bf16, micro_amx, 512, AMX_MR, 128, 1, 16, amx_begin, amx_end};
    if (sdf_gemm_bf16_amx_available()) return gemm(&amx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (sdf_gemm_bf16_available()) return sdf_gemm_bf16_avx512(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
    return gemm(&portable, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int sdf_gemm_bf16_avx512(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                         long ldb, float beta, float *c, long ldc) {
#if SDF_X86
    static const struct gemm_kernel hardware = {pack_a_bf16, pack_b_bf16, micro_avx512bf16, 384, MR, MC, 1, 1, NULL, NULL};
    if (sdf_gemm_bf16_available()) return gemm(&hardware, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
    return -2;
}

int sdf_gemm_bf16_amx_available(void) {
#if SDF_X86
    return sdf_isa_cap >= SDF_ISA_AMX && amx_usable();
#else
    return 0;
#endif
}

int sdf_gemm_f32_available(void) {
#if SDF_X86
    return sdf_cpu_avx512();
#else
    return 0;
#endif
}

int sdf_gemm_f32(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                 long ldb, float beta, float *c, long ldc) {
#if SDF_X86
    static const struct gemm_kernel avx512 = {pack_a_f32, pack_b_f32, micro_avx512f32, 256, MR, MC, 0, 1, NULL, NULL};
    if (sdf_gemm_f32_available()) return gemm(&avx512, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
    return -2;
}
