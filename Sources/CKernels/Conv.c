// Direct 3x3 convolution (stride 1, padding 1) for convolutions with few output channels: the
// last layer of a decoder (64 or 128 channels to RGB). There Winograd's GEMMs have only 3 rows
// and the input transform costs as much as for a full layer; direct multiply-adds over each
// output row, with the few outputs' accumulators in registers, do less work.
#include "CKernels.h"
#include "Dispatch.h"

#if SDF_X86
#include <immintrin.h>
#endif

// Output rows [y0, y1) of `k` (1 to 4) output channels: out[o][y][x] = bias[o] + sum over c, ky,
// kx of w[o][c][ky][kx] in[c][y + ky - 1][x + kx - 1], zero outside the image. Each output row is
// accumulated over the channels in place, nine taps at a time; `zero` is a row of `width` zeros
// that stands for the rows above and below the image.
#define CONV3X3_FEW(k)                                                                                         \
    SDF_INLINE void conv3x3_few_##k(const float *image, long channels, long height, long width,             \
                                   const float *weights, const float *bias, const float *zero, long y0, long y1, \
                                   float *out) {                                                           \
        long plane = height * width;                                                                       \
        for (long y = y0; y < y1; y++) {                                                                   \
            float *restrict acc[k];                                                                        \
            SDF_UNROLL for (int o = 0; o < k; o++) {                                                       \
                acc[o] = out + o * plane + y * width;                                                      \
                for (long x = 0; x < width; x++) acc[o][x] = bias ? bias[o] : 0.0f;                        \
            }                                                                                              \
            for (long c = 0; c < channels; c++) {                                                          \
                const float *p = image + c * plane;                                                        \
                const float *restrict r0 = y > 0 ? p + (y - 1) * width : zero;                             \
                const float *restrict r1 = p + y * width;                                                  \
                const float *restrict r2 = y + 1 < height ? p + (y + 1) * width : zero;                    \
                float w[k][9];                                                                             \
                SDF_UNROLL for (int o = 0; o < k; o++)                                                     \
                    SDF_UNROLL for (int t = 0; t < 9; t++) w[o][t] = weights[(o * channels + c) * 9 + t];  \
                /* the inner columns read x - 1 .. x + 1 inside the row */                                \
                _Pragma("clang loop vectorize(assume_safety)") for (long x = 1; x < width - 1; x++) {      \
                    float a0 = r0[x - 1], a1 = r0[x], a2 = r0[x + 1];                                      \
                    float b0 = r1[x - 1], b1 = r1[x], b2 = r1[x + 1];                                      \
                    float c0 = r2[x - 1], c1 = r2[x], c2 = r2[x + 1];                                      \
                    SDF_UNROLL for (int o = 0; o < k; o++) {                                               \
                        acc[o][x] += w[o][0] * a0 + w[o][1] * a1 + w[o][2] * a2 + w[o][3] * b0 + w[o][4] * b1 + \
                                     w[o][5] * b2 + w[o][6] * c0 + w[o][7] * c1 + w[o][8] * c2;            \
                    }                                                                                      \
                }                                                                                          \
                /* the first and last columns, with the pixels outside the image zero */                  \
                long edges[2] = {0, width - 1};                                                            \
                for (int e = 0; e < (width > 1 ? 2 : 1); e++) {                                            \
                    long x = edges[e];                                                                     \
                    const float *rows[3] = {r0, r1, r2};                                                   \
                    for (int o = 0; o < k; o++) {                                                          \
                        float s = 0;                                                                       \
                        for (int ky = 0; ky < 3; ky++)                                                     \
                            for (int kx = 0; kx < 3; kx++) {                                               \
                                long xi = x + kx - 1;                                                      \
                                if (xi >= 0 && xi < width) s += w[o][ky * 3 + kx] * rows[ky][xi];          \
                            }                                                                              \
                        acc[o][x] += s;                                                                    \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }
CONV3X3_FEW(1)
CONV3X3_FEW(2)
CONV3X3_FEW(3)
CONV3X3_FEW(4)

SDF_INLINE void sdf_conv3x3_few_body(const float *image, long channels, long height, long width, const float *weights,
                                     long outputs, const float *bias, const float *zero, long y0, long y1, float *out) {
    long plane = height * width;
    for (long o = 0; o < outputs; o += 4) {
        long k = outputs - o < 4 ? outputs - o : 4;
        const float *w = weights + o * channels * 9, *b = bias ? bias + o : 0;
        float *dst = out + o * plane;
        switch (k) {
            case 1: conv3x3_few_1(image, channels, height, width, w, b, zero, y0, y1, dst); break;
            case 2: conv3x3_few_2(image, channels, height, width, w, b, zero, y0, y1, dst); break;
            case 3: conv3x3_few_3(image, channels, height, width, w, b, zero, y0, y1, dst); break;
            default: conv3x3_few_4(image, channels, height, width, w, b, zero, y0, y1, dst); break;
        }
    }
}
SDF_MULTIVERSION(sdf_conv3x3_few,
                 (const float *image, long channels, long height, long width, const float *weights, long outputs,
                  const float *bias, const float *zero, long y0, long y1, float *out),
                 (image, channels, height, width, weights, outputs, bias, zero, y0, y1, out))

// The taps [k0, k1) of a 3x3 kernel centred on row (or column) p whose input row p + k - 1 lies
// in [0, n): the others read the zero padding.
SDF_INLINE void taps_inside(long p, long n, int *k0, int *k1) {
    *k0 = p > 0 ? 0 : 1;
    *k1 = p + 1 < n ? 3 : 2;
}

// The same convolution of an image stored channels last, (height, width, channels), into output
// rows [y0, y1) of out (outputs, height, width); weights (outputs, 3, 3, channels). Each output is
// a dot product over the nine pixels' channels, kept in 16 partial sums that vectorise.
SDF_INLINE void sdf_conv3x3_few_nhwc_body(const float *image, long channels, long height, long width, const float *weights,
                                          long outputs, const float *bias, long y0, long y1, float *out) {
    enum { lanes = 16 };
    long whole = channels / lanes * lanes;
    for (long y = y0; y < y1; y++) {
        for (long x = 0; x < width; x++) {
            for (long o = 0; o < outputs; o++) {
                float acc[lanes] = {0};
                float rest = 0;
                int ky0, ky1, kx0, kx1;
                taps_inside(y, height, &ky0, &ky1);
                taps_inside(x, width, &kx0, &kx1);
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *p = image + ((y + ky - 1) * width + x + kx - 1) * channels;
                        const float *w = weights + ((o * 3 + ky) * 3 + kx) * channels;
                        for (long c = 0; c < whole; c += lanes)
                            SDF_UNROLL for (int l = 0; l < lanes; l++) acc[l] += w[c + l] * p[c + l];
                        for (long c = whole; c < channels; c++) rest += w[c] * p[c];
                    }
                // the partial sums pairwise (a chain of 16 additions would wait on each one)
                SDF_UNROLL for (int half = lanes / 2; half > 0; half /= 2)
                    SDF_UNROLL for (int l = 0; l < half; l++) acc[l] += acc[l + half];
                out[(o * height + y) * width + x] = (bias ? bias[o] : 0.0f) + acc[0] + rest;
            }
        }
    }
}
#if SDF_X86
// The same with up to 4 outputs at a time sharing each load of the input, their 16 partial sums
// in registers.
SDF_AVX512 SDF_INLINE void conv3x3_few_nhwc_avx512(const float *image, long channels, long height, long width,
                                                   const float *weights, long outputs, const float *bias, long y0, long y1,
                                                   float *out) {
    long whole = channels / 16 * 16;
    __mmask16 tail = (__mmask16)((1u << (channels - whole)) - 1);  // the channels after the whole vectors
    for (long o0 = 0; o0 < outputs; o0 += 4) {
        int k = outputs - o0 < 4 ? (int)(outputs - o0) : 4;
        for (long y = y0; y < y1; y++) {
            for (long x = 0; x < width; x++) {
                __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
                int ky0, ky1, kx0, kx1;
                taps_inside(y, height, &ky0, &ky1);
                taps_inside(x, width, &kx0, &kx1);
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *p = image + ((y + ky - 1) * width + x + kx - 1) * channels;
                        const float *w = weights + ((o0 * 3 + ky) * 3 + kx) * channels;  // output o0 + q's: q x 9 x channels further
                        for (long c = 0; c < whole; c += 16) {
                            __m512 v = _mm512_loadu_ps(p + c);
                            SDF_UNROLL for (int q = 0; q < 4; q++)
                                if (q < k) acc[q] = _mm512_fmadd_ps(_mm512_loadu_ps(w + q * 9 * channels + c), v, acc[q]);
                        }
                        if (tail) {
                            __m512 v = _mm512_maskz_loadu_ps(tail, p + whole);
                            SDF_UNROLL for (int q = 0; q < 4; q++)
                                if (q < k) acc[q] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w + q * 9 * channels + whole), v, acc[q]);
                        }
                    }
                for (int q = 0; q < k; q++)
                    out[((o0 + q) * height + y) * width + x] = (bias ? bias[o0 + q] : 0.0f) + _mm512_reduce_add_ps(acc[q]);
            }
        }
    }
}
#endif
SDF_MULTIVERSION_BODIES(sdf_conv3x3_few_nhwc, conv3x3_few_nhwc_avx512, sdf_conv3x3_few_nhwc_body,
                 (const float *image, long channels, long height, long width, const float *weights, long outputs,
                  const float *bias, long y0, long y1, float *out),
                 (image, channels, height, width, weights, outputs, bias, y0, y1, out))
