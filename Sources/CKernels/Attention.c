// Register-blocked kernels for one attention head, for the small head widths of SD (40, 80,
// 160) where a general GEMM spends most of its time packing. AVX-512 and AVX2 microkernels
// with explicit intrinsics for full tiles; portable loops for edges and for other CPUs.
#include "CKernels.h"
#include "BF16.h"
#include "Dispatch.h"

#include <string.h>

#if SDF_X86
#include <immintrin.h>
#endif

// MARK: - Scores: scale * q k^T

// Keys are packed in blocks of 32: kp[block][k][0..32) = K[block * 32 + j][k], so a tile's
// keys are one contiguous 32 x d panel that the hardware prefetcher streams.

// Portable: scores for rows [i0, i1) and every key block.
static void scores_generic(const float *q, long q_stride, const float *kp, long d, long blocks, float scale,
                           long i0, long i1, float *scores, long scores_stride) {
    for (long i = i0; i < i1; i++) {
        for (long b = 0; b < blocks; b++) {
            float acc[32] = {0};
            const float *panel = kp + b * 32 * d;
            for (long k = 0; k < d; k++) {
                float qv = q[i * q_stride + k];
                SDF_UNROLL for (int j = 0; j < 32; j++) acc[j] += qv * panel[k * 32 + j];
            }
            SDF_UNROLL for (int j = 0; j < 32; j++) scores[i * scores_stride + b * 32 + j] = acc[j] * scale;
        }
    }
}

#if SDF_X86
// 12 query rows x 32 keys: 24 accumulators; per k, two key loads and 12 broadcasts feed 24 FMAs.
#define SR 12
SDF_AVX512 static void scores_tile_avx512(const float *q, long q_stride, const float *panel, long d,
                                          float scale, float *scores, long scores_stride) {
    __m512 c0[SR], c1[SR];
    SDF_UNROLL for (int i = 0; i < SR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long k = 0; k < d; k++) {
        __m512 b0 = _mm512_loadu_ps(panel + k * 32), b1 = _mm512_loadu_ps(panel + k * 32 + 16);
        SDF_UNROLL for (int i = 0; i < SR; i++) {
            __m512 a = _mm512_set1_ps(q[i * q_stride + k]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m512 s = _mm512_set1_ps(scale);
    SDF_UNROLL for (int i = 0; i < SR; i++) {
        _mm512_storeu_ps(scores + i * scores_stride, _mm512_mul_ps(c0[i], s));
        _mm512_storeu_ps(scores + i * scores_stride + 16, _mm512_mul_ps(c1[i], s));
    }
}

// AVX2: 6 query rows x 16 keys (half a panel): 12 accumulators of the 16 registers.
#define SR2 6
SDF_AVX2 static void scores_tile_avx2(const float *q, long q_stride, const float *panel, long d,
                                      float scale, float *scores, long scores_stride) {
    __m256 c0[SR2], c1[SR2];
    SDF_UNROLL for (int i = 0; i < SR2; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (long k = 0; k < d; k++) {
        __m256 b0 = _mm256_loadu_ps(panel + k * 32), b1 = _mm256_loadu_ps(panel + k * 32 + 8);
        SDF_UNROLL for (int i = 0; i < SR2; i++) {
            __m256 a = _mm256_broadcast_ss(q + i * q_stride + k);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m256 s = _mm256_set1_ps(scale);
    SDF_UNROLL for (int i = 0; i < SR2; i++) {
        _mm256_storeu_ps(scores + i * scores_stride, _mm256_mul_ps(c0[i], s));
        _mm256_storeu_ps(scores + i * scores_stride + 8, _mm256_mul_ps(c1[i], s));
    }
}
#endif

void sdf_attention_pack_keys(const float *k, long k_stride, long keys, long d, float *kp) {
    long blocks = (keys + 31) / 32;
    for (long b = 0; b < blocks; b++) {
        float *panel = kp + b * 32 * d;
        SDF_UNROLL for (int j = 0; j < 32; j++) {
            long key = b * 32 + j;
            for (long c = 0; c < d; c++) panel[c * 32 + j] = key < keys ? k[key * k_stride + c] : 0.0f;
        }
    }
}

void sdf_attention_scores(const float *q, long q_stride, const float *kp, long d, long rows, long keys,
                          float scale, float *scores, long scores_stride) {
    long blocks = (keys + 31) / 32, full_rows = 0;
#if SDF_X86
    if (sdf_cpu_avx512()) {
        full_rows = rows / SR * SR;
        for (long i = 0; i < full_rows; i += SR)
            for (long b = 0; b < blocks; b++)
                scores_tile_avx512(q + i * q_stride, q_stride, kp + b * 32 * d, d, scale, scores + i * scores_stride + b * 32, scores_stride);
    } else if (sdf_cpu_avx2()) {
        full_rows = rows / SR2 * SR2;
        for (long i = 0; i < full_rows; i += SR2)
            for (long b = 0; b < blocks; b++)
                for (int half = 0; half < 32; half += 16)
                    scores_tile_avx2(q + i * q_stride, q_stride, kp + b * 32 * d + half, d, scale,
                                     scores + i * scores_stride + b * 32 + half, scores_stride);
    }
#endif
    if (full_rows < rows) scores_generic(q, q_stride, kp, d, blocks, scale, full_rows, rows, scores, scores_stride);
}

// MARK: - Values: p v

static void values_generic(const float *p, long p_stride, const float *v, long width_padded, long keys,
                           long i0, long i1, long c0, long c1, float *out, long out_stride) {
    for (long i = i0; i < i1; i++) {
        float *o = out + i * out_stride;
        for (long c = c0; c < c1; c++) o[c] = 0.0f;
        for (long s = 0; s < keys; s++) {
            float pv = p[i * p_stride + s];
            const float *vrow = v + s * width_padded;
            for (long c = c0; c < c1; c++) o[c] += pv * vrow[c];
        }
    }
}

#if SDF_X86
// 8 rows x 48 columns: 24 accumulators; per key, three value loads and 8 broadcasts feed 24 FMAs.
#define VR 8

// Rows of three 16-column accumulators -> out, only the `width` (<= 48) real columns.
__attribute__((target("avx512f"))) SDF_INLINE void store_rows48(const __m512 *a0, const __m512 *a1, const __m512 *a2, long rows,
                                                                long width, float *out, long out_stride) {
    __mmask16 m0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    __mmask16 m1 = width >= 32 ? 0xFFFF : width > 16 ? (__mmask16)((1u << (width - 16)) - 1) : 0;
    __mmask16 m2 = width >= 48 ? 0xFFFF : width > 32 ? (__mmask16)((1u << (width - 32)) - 1) : 0;
    for (long i = 0; i < rows; i++) {
        _mm512_mask_storeu_ps(out + i * out_stride, m0, a0[i]);
        _mm512_mask_storeu_ps(out + i * out_stride + 16, m1, a1[i]);
        _mm512_mask_storeu_ps(out + i * out_stride + 32, m2, a2[i]);
    }
}
SDF_AVX512 static void values_tile_avx512(const float *p, long p_stride, const float *v, long width_padded, long keys,
                                          float *out, long out_stride, long width) {
    __m512 a0[VR], a1[VR], a2[VR];
    SDF_UNROLL for (int i = 0; i < VR; i++) { a0[i] = _mm512_setzero_ps(); a1[i] = _mm512_setzero_ps(); a2[i] = _mm512_setzero_ps(); }
    for (long s = 0; s < keys; s++) {
        const float *vrow = v + s * width_padded;
        __m512 b0 = _mm512_loadu_ps(vrow), b1 = _mm512_loadu_ps(vrow + 16), b2 = _mm512_loadu_ps(vrow + 32);
        SDF_UNROLL for (int i = 0; i < VR; i++) {
            __m512 x = _mm512_set1_ps(p[i * p_stride + s]);
            a0[i] = _mm512_fmadd_ps(x, b0, a0[i]);
            a1[i] = _mm512_fmadd_ps(x, b1, a1[i]);
            a2[i] = _mm512_fmadd_ps(x, b2, a2[i]);
        }
    }
    store_rows48(a0, a1, a2, VR, width, out, out_stride);
}

// AVX2: 6 rows x 16 columns: 12 accumulators of the 16 registers.
#define VR2 6
SDF_AVX2 static void values_tile_avx2(const float *p, long p_stride, const float *v, long width_padded, long keys,
                                      float *out, long out_stride) {
    __m256 a0[VR2], a1[VR2];
    SDF_UNROLL for (int i = 0; i < VR2; i++) { a0[i] = _mm256_setzero_ps(); a1[i] = _mm256_setzero_ps(); }
    for (long s = 0; s < keys; s++) {
        const float *vrow = v + s * width_padded;
        __m256 b0 = _mm256_loadu_ps(vrow), b1 = _mm256_loadu_ps(vrow + 8);
        SDF_UNROLL for (int i = 0; i < VR2; i++) {
            __m256 x = _mm256_broadcast_ss(p + i * p_stride + s);
            a0[i] = _mm256_fmadd_ps(x, b0, a0[i]);
            a1[i] = _mm256_fmadd_ps(x, b1, a1[i]);
        }
    }
    SDF_UNROLL for (int i = 0; i < VR2; i++) {
        _mm256_storeu_ps(out + i * out_stride, a0[i]);
        _mm256_storeu_ps(out + i * out_stride + 8, a1[i]);
    }
}

// AVX2: 6 rows x 8 columns, for the last 8 columns of widths such as 40.
SDF_AVX2 static void values_tile8_avx2(const float *p, long p_stride, const float *v, long width_padded, long keys,
                                       float *out, long out_stride) {
    __m256 a[VR2];
    SDF_UNROLL for (int i = 0; i < VR2; i++) a[i] = _mm256_setzero_ps();
    for (long s = 0; s < keys; s++) {
        __m256 b = _mm256_loadu_ps(v + s * width_padded);
        SDF_UNROLL for (int i = 0; i < VR2; i++) a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i * p_stride + s), b, a[i]);
    }
    SDF_UNROLL for (int i = 0; i < VR2; i++) _mm256_storeu_ps(out + i * out_stride, a[i]);
}
#endif

void sdf_attention_values(const float *p, long p_stride, const float *v, long width_padded, long keys, long rows, long width,
                          float *out, long out_stride) {
    long full_rows = 0;
#if SDF_X86
    if (sdf_cpu_avx512()) {
        full_rows = rows / VR * VR;
        for (long i = 0; i < full_rows; i += VR) {
            for (long c = 0; c < width; c += 48) {
                long remaining = width - c;
                if (width_padded - c >= 48) {
                    values_tile_avx512(p + i * p_stride, p_stride, v + c, width_padded, keys, out + i * out_stride + c, out_stride,
                                       remaining < 48 ? remaining : 48);
                } else {
                    values_generic(p, p_stride, v, width_padded, keys, i, i + VR, c, width, out, out_stride);
                }
            }
        }
    } else if (sdf_cpu_avx2()) {
        full_rows = rows / VR2 * VR2;
        long full_columns = width / 8 * 8;  // the rest of the columns: the portable loop
        for (long i = 0; i < full_rows; i += VR2) {
            long c = 0;
            for (; c + 16 <= full_columns; c += 16)
                values_tile_avx2(p + i * p_stride, p_stride, v + c, width_padded, keys, out + i * out_stride + c, out_stride);
            if (c < full_columns)
                values_tile8_avx2(p + i * p_stride, p_stride, v + c, width_padded, keys, out + i * out_stride + c, out_stride);
            if (full_columns < width)
                values_generic(p, p_stride, v, width_padded, keys, i, i + VR2, full_columns, width, out, out_stride);
        }
    }
#endif
    if (full_rows < rows) values_generic(p, p_stride, v, width_padded, keys, full_rows, rows, 0, width, out, out_stride);
}

// MARK: - bfloat16 (fast mode, AVX-512 BF16)

// The same two products with operands rounded to bfloat16 and float32 accumulation
// (vdpbf16ps), in pairs along the reduced axis as in Gemm.c: keys in panels of 32 with
// pairs along d ([block][d/2][32]), values with pairs along the keys ([S/2][width_padded]).
// Only called where sdf_gemm_bf16_available().
#if SDF_X86
SDF_BF16 void sdf_attention_pack_keys_bf16(const float *k, long k_stride, long keys, long d, uint32_t *kp) {
    long blocks = (keys + 31) / 32, pairs = (d + 1) / 2;
    uint32_t row[512];  // d <= 1024
    for (long b = 0; b < blocks; b++) {
        uint32_t *panel = kp + b * 32 * pairs;
        SDF_UNROLL for (int j = 0; j < 32; j++) {
            long key = b * 32 + j;
            if (key < keys) sdf_bf16_row(k + key * k_stride, d, row);
            for (long t = 0; t < pairs; t++) panel[t * 32 + j] = key < keys ? row[t] : 0;
        }
    }
}

SDF_BF16 void sdf_attention_pack_values_bf16(const float *v, long v_stride, long keys, long width, long width_padded,
                                                       uint32_t *vp) {
    for (long s = 0; s < keys; s += 2) {
        const float *r0 = v + s * v_stride;
        for (long c = 0; c < width_padded; c += 16) {
            long n = width - c <= 0 ? 0 : width - c < 16 ? width - c : 16;
            __mmask16 mask = (__mmask16)((1u << n) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(mask, r0 + c);
            __m512 x1 = s + 1 < keys ? _mm512_maskz_loadu_ps(mask, r0 + v_stride + c) : _mm512_setzero_ps();
            _mm512_storeu_si512(vp + (s / 2) * width_padded + c, sdf_bf16_interleave(x0, x1));
        }
    }
}

// 12 query rows (as pairs, row stride `pairs`) x one panel of 32 keys.
SDF_BF16 static void scores_tile_bf16(const uint32_t *q, long pairs, const uint32_t *panel, float scale, float *scores,
                                                long scores_stride, long rows) {
    __m512 c0[SR], c1[SR];
    SDF_UNROLL for (int i = 0; i < SR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long t = 0; t < pairs; t++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + t * 32), b1 = (__m512bh)_mm512_loadu_si512(panel + t * 32 + 16);
        SDF_UNROLL for (int i = 0; i < SR; i++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)q[i * pairs + t]);
            c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
        }
    }
    __m512 s = _mm512_set1_ps(scale);
    for (int i = 0; i < rows; i++) {
        _mm512_storeu_ps(scores + i * scores_stride, _mm512_mul_ps(c0[i], s));
        _mm512_storeu_ps(scores + i * scores_stride + 16, _mm512_mul_ps(c1[i], s));
    }
}

SDF_BF16 void sdf_attention_scores_bf16(const float *q, long q_stride, const uint32_t *kp, long d, long rows, long keys,
                                                  float scale, float *scores, long scores_stride) {
    long blocks = (keys + 31) / 32, pairs = (d + 1) / 2;
    uint32_t qp[SR * 512];  // d <= 1024
    for (long i = 0; i < rows; i += SR) {
        long tile = rows - i < SR ? rows - i : SR;
        for (long r = 0; r < SR; r++) {
            if (r < tile) sdf_bf16_row(q + (i + r) * q_stride, d, qp + r * pairs);
            else memset(qp + r * pairs, 0, (size_t)pairs * 4);
        }
        for (long b = 0; b < blocks; b++)
            scores_tile_bf16(qp, pairs, kp + b * 32 * pairs, scale, scores + i * scores_stride + b * 32, scores_stride, tile);
    }
}

// 8 rows of p (as pairs, row stride `pairs`) x 48 columns of the packed values.
SDF_BF16 static void values_tile_bf16(const uint32_t *p, long pairs, const uint32_t *v, long width_padded, float *out,
                                                long out_stride, long rows, long width) {
    __m512 a0[VR], a1[VR], a2[VR];
    SDF_UNROLL for (int i = 0; i < VR; i++) { a0[i] = _mm512_setzero_ps(); a1[i] = _mm512_setzero_ps(); a2[i] = _mm512_setzero_ps(); }
    for (long t = 0; t < pairs; t++) {
        const uint32_t *vrow = v + t * width_padded;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(vrow), b1 = (__m512bh)_mm512_loadu_si512(vrow + 16);
        __m512bh b2 = (__m512bh)_mm512_loadu_si512(vrow + 32);
        SDF_UNROLL for (int i = 0; i < VR; i++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)p[i * pairs + t]);
            a0[i] = _mm512_dpbf16_ps(a0[i], x, b0);
            a1[i] = _mm512_dpbf16_ps(a1[i], x, b1);
            a2[i] = _mm512_dpbf16_ps(a2[i], x, b2);
        }
    }
    store_rows48(a0, a1, a2, rows, width, out, out_stride);
}

SDF_BF16 void sdf_attention_values_bf16(const float *p, long p_stride, const uint32_t *vp, long width_padded, long keys,
                                                  long rows, long width, float *out, long out_stride, uint32_t *scratch) {
    long pairs = (keys + 1) / 2;
    for (long i = 0; i < rows; i += VR) {
        long tile = rows - i < VR ? rows - i : VR;
        for (long r = 0; r < VR; r++) {
            if (r < tile) sdf_bf16_row(p + (i + r) * p_stride, keys, scratch + r * pairs);
            else memset(scratch + r * pairs, 0, (size_t)pairs * 4);
        }
        for (long c = 0; c < width; c += 48)
            values_tile_bf16(scratch, pairs, vp + c, width_padded, out + i * out_stride + c, out_stride, tile,
                             width - c < 48 ? width - c : 48);
    }
}
#endif
