// bfloat16 packing shared by the fast-mode kernels (Gemm.c, Attention.c). vdpbf16ps reads
// pairs along the reduced axis: a 32-bit lane holds (x[k], x[k+1]) as bfloat16, x[k] in the
// low half. Conversions round to nearest even (vcvtne2ps2bf16).
#pragma once

#include "Dispatch.h"

#include <stdint.h>

#if SDF_X86
#include <immintrin.h>

#define SDF_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

// n (<= 16) pairs from 2n contiguous floats (the last one missing when `odd`).
SDF_BF16 SDF_INLINE __m512i sdf_bf16_pairs(const float *x, long n, int odd) {
    long count = 2 * n - (odd ? 1 : 0);
    __mmask16 lo = (__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1);
    __mmask16 hi = (__mmask16)(count >= 32 ? 0xFFFF : count <= 16 ? 0 : (1u << (count - 16)) - 1);
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + 16), _mm512_maskz_loadu_ps(lo, x));
}

// A row of n floats -> ceil(n / 2) pairs.
SDF_BF16 SDF_INLINE void sdf_bf16_row(const float *x, long n, uint32_t *out) {
    long pairs = (n + 1) / 2;
    for (long q = 0; q < pairs; q += 16) {
        long count = pairs - q < 16 ? pairs - q : 16;
        _mm512_mask_storeu_epi32(out + q, (__mmask16)((1u << count) - 1), sdf_bf16_pairs(x + 2 * q, count, (n & 1) && q + count == pairs));
    }
}

// Pairs (r0[j], r1[j]) for 16 columns of two rows.
SDF_BF16 SDF_INLINE __m512i sdf_bf16_interleave(__m512 r0, __m512 r1) {
    // cvtne2ps(r1, r0) holds [r0 0..15, r1 0..15] as bfloat16; the permutation interleaves them.
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(r1, r0));
}
#endif
