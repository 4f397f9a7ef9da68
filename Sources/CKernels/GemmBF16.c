// Single-precision GEMM computed in bfloat16 with float32 accumulation, for the fast mode on
// CPUs with AVX-512 BF16 (vdpbf16ps: 32 multiply-adds per instruction, twice FMA's rate).
//
// Operands are float32; packing rounds them to bfloat16 (nearest even) in pairs along k, the
// layout vdpbf16ps reads: a 32-bit lane holds (x[k], x[k+1]) with x[k] in the low half.
// Blocking (Goto): for each KC slice of k and NC block of columns, B is packed into panels
// of NR = 32 columns ([kc/2][32] pairs, 24 KB, in L1 while it is used); for each MC block of
// rows A is packed into panels of MR = 12 rows ([12][kc/2] pairs, in L2); a 12 x 32
// microkernel keeps 24 zmm accumulators. Edges are zero-padded in the panels and written
// through a small buffer.
#include "CKernels.h"
#include "BF16.h"
#include "Dispatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if SDF_X86
#include <immintrin.h>
#endif

#define MR 12
#define NR 32
#define KC 384
#define MC 96
#define NC 1024

int sdf_gemm_bf16_available(void) {
#if SDF_X86
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
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

// Rows [i0, i0 + rows) and k range [p0, p0 + kc) of op(A) -> panels of MR rows, each row's
// pairs contiguous: panel r holds pairs[MR][kp]; rows beyond `rows` and the odd k tail are zero.
static void pack_a_generic(const float *a, long lda, int ta, long i0, long rows, long p0, long kc, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    for (long r = 0; r < (rows + MR - 1) / MR * MR; r++) {
        uint32_t *dst = out + r * pairs;
        if (r >= rows) {
            memset(dst, 0, (size_t)pairs * 4);
            continue;
        }
        for (long q = 0; q < pairs; q++) {
            long p = p0 + 2 * q;
            float x1 = 2 * q + 1 < kc ? at(a, lda, ta, i0 + r, p + 1) : 0;
            dst[q] = bf16_pair(at(a, lda, ta, i0 + r, p), x1);
        }
    }
}

// Columns [j0, j0 + cols) and k range [p0, p0 + kc) of op(B) -> panels of NR columns: panel c
// holds pairs[kp][NR]; columns beyond `cols` and the odd k tail are zero.
static void pack_b_generic(const float *b, long ldb, int tb, long j0, long cols, long p0, long kc, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    for (long c = 0; c < cols; c += NR) {
        uint32_t *panel = out + (c / NR) * pairs * NR;
        long width = cols - c < NR ? cols - c : NR;
        for (long q = 0; q < pairs; q++) {
            long p = p0 + 2 * q;
            uint32_t *dst = panel + q * NR;
            for (long j = 0; j < width; j++) {
                float x1 = 2 * q + 1 < kc ? at(b, ldb, tb, p + 1, j0 + c + j) : 0;
                dst[j] = bf16_pair(at(b, ldb, tb, p, j0 + c + j), x1);
            }
            for (long j = width; j < NR; j++) dst[j] = 0;
        }
    }
}

#if SDF_X86
// pack_a_generic for row-major A (pairs along k are adjacent floats).
SDF_BF16 static void pack_a_rows(const float *a, long lda, long i0, long rows, long p0, long kc, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    for (long r = 0; r < (rows + MR - 1) / MR * MR; r++) {
        if (r < rows) sdf_bf16_row(a + (i0 + r) * lda + p0, kc, out + r * pairs);
        else memset(out + r * pairs, 0, (size_t)pairs * 4);
    }
}

// pack_b_generic for row-major B: rows p and p + 1 are read as two streams and interleaved.
SDF_BF16 static void pack_b_rows(const float *b, long ldb, long j0, long cols, long p0, long kc, uint32_t *out) {
    long pairs = (kc + 1) / 2;
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
            _mm512_storeu_si512(out + (c / NR) * pairs * NR + q * NR + c % NR, v);
        }
        if (cols % NR && cols % NR <= 16) {
            // The last panel's second half of 16 columns is all padding.
            _mm512_storeu_si512(out + (cols / NR) * pairs * NR + q * NR + 16, _mm512_setzero_si512());
        }
    }
}

// pack_b_generic for B given transposed (B[p][j] = b[j * ldb + p], a linear layer's weight):
// each column's pairs are adjacent floats, converted 16 at a time and stored with stride NR.
SDF_BF16 static void pack_b_columns(const float *b, long ldb, long j0, long cols, long p0, long kc, uint32_t *out) {
    long pairs = (kc + 1) / 2;
    int odd = kc & 1;
    for (long j = 0; j < (cols + NR - 1) / NR * NR; j++) {
        uint32_t *panel = out + (j / NR) * pairs * NR + j % NR;
        if (j >= cols) {
            for (long q = 0; q < pairs; q++) panel[q * NR] = 0;
            continue;
        }
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

static void pack_a(const float *a, long lda, int ta, long i0, long rows, long p0, long kc, uint32_t *out, int fast) {
#if SDF_X86
    if (fast && !ta) return pack_a_rows(a, lda, i0, rows, p0, kc, out);
#endif
    (void)fast;
    pack_a_generic(a, lda, ta, i0, rows, p0, kc, out);
}

static void pack_b(const float *b, long ldb, int tb, long j0, long cols, long p0, long kc, uint32_t *out, int fast) {
#if SDF_X86
    if (fast) return tb ? pack_b_columns(b, ldb, j0, cols, p0, kc, out) : pack_b_rows(b, ldb, j0, cols, p0, kc, out);
#endif
    (void)fast;
    pack_b_generic(b, ldb, tb, j0, cols, p0, kc, out);
}

// acc (MR x NR, row-major) -> C rows/cols within bounds: C = alpha * acc + beta * C.
static void store_tile(const float *acc, long rows, long cols, float alpha, float beta, float *c, long ldc) {
    for (long i = 0; i < rows; i++) {
        for (long j = 0; j < cols; j++) {
            float v = alpha * acc[i * NR + j];
            c[i * ldc + j] = beta == 0 ? v : v + beta * c[i * ldc + j];
        }
    }
}

#if SDF_X86
// 12 x 32 tile over `pairs` k-pairs: per pair two B loads and 12 broadcasts (one per A row) feed 24 vdpbf16ps.
SDF_BF16 static void micro_avx512bf16(
    const uint32_t *ap, const uint32_t *bp, long pairs, float alpha, float beta, float *c, long ldc, long rows, long cols) {
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < MR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long q = 0; q < pairs; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + q * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + q * NR + 16);
        for (int i = 0; i < MR; i++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[i * pairs + q]);
            c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
        }
    }
    if (rows == MR && cols == NR) {
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        for (int i = 0; i < MR; i++) {
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
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(acc + i * NR, c0[i]);
        _mm512_storeu_ps(acc + i * NR + 16, c1[i]);
    }
    store_tile(acc, rows, cols, alpha, beta, c, ldc);
}
#endif

// Portable microkernel with the same rounding (bf16 products are exact in float32; only the
// summation order differs from vdpbf16ps). Used where AVX-512 BF16 is missing (tests).
static void micro_generic(const uint32_t *ap, const uint32_t *bp, long pairs, float alpha, float beta, float *c, long ldc,
                          long rows, long cols) {
    float acc[MR * NR] = {0};
    for (long q = 0; q < pairs; q++) {
        for (int i = 0; i < MR; i++) {
            uint32_t pa = ap[i * pairs + q];
            uint32_t lo_bits = pa << 16, hi_bits = pa & 0xFFFF0000u;
            float a0, a1;
            memcpy(&a0, &lo_bits, 4);
            memcpy(&a1, &hi_bits, 4);
            for (int j = 0; j < NR; j++) {
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

int sdf_gemm_bf16(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                  long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return 0;
    }
    long ncap = n < NC ? n : NC, mcap = m < MC ? m : MC;
    uint32_t *bp = reserve(&b_buffer, &b_capacity, (size_t)((ncap + NR - 1) / NR * NR) * (KC / 2));
    uint32_t *ap = reserve(&a_buffer, &a_capacity, (size_t)((mcap + MR - 1) / MR * MR) * (KC / 2));
    if (!bp || !ap) return -1;
    int fast = sdf_gemm_bf16_available();
    for (long p0 = 0; p0 < k; p0 += KC) {
        long kc = k - p0 < KC ? k - p0 : KC, pairs = (kc + 1) / 2;
        float step_beta = p0 == 0 ? beta : 1;  // later k slices accumulate onto C
        for (long j0 = 0; j0 < n; j0 += NC) {
            long cols = n - j0 < NC ? n - j0 : NC;
            pack_b(b, ldb, trans_b, j0, cols, p0, kc, bp, fast);
            for (long i0 = 0; i0 < m; i0 += MC) {
                long rows = m - i0 < MC ? m - i0 : MC;
                pack_a(a, lda, trans_a, i0, rows, p0, kc, ap, fast);
                for (long jc = 0; jc < cols; jc += NR) {
                    const uint32_t *bpanel = bp + (jc / NR) * pairs * NR;
                    long tile_cols = cols - jc < NR ? cols - jc : NR;
                    for (long ic = 0; ic < rows; ic += MR) {
                        const uint32_t *apanel = ap + (ic / MR) * pairs * MR;
                        long tile_rows = rows - ic < MR ? rows - ic : MR;
                        float *ct = c + (i0 + ic) * ldc + j0 + jc;
#if SDF_X86
                        if (fast) {
                            micro_avx512bf16(apanel, bpanel, pairs, alpha, step_beta, ct, ldc, tile_rows, tile_cols);
                            continue;
                        }
#endif
                        micro_generic(apanel, bpanel, pairs, alpha, step_beta, ct, ldc, tile_rows, tile_cols);
                    }
                }
            }
        }
    }
    return 0;
}
