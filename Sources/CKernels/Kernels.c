#include "CKernels.h"
#include "Dispatch.h"

#include <math.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string.h>

#if SDF_X86
#include <immintrin.h>
#endif

// MARK: - Scalar building blocks (branch-free so that loops vectorise)

// exp(x) to about 1 ulp: x = q ln2 + s with |s| <= ln2 / 2, exp(s) by a degree-7 polynomial
// (SLEEF's expf coefficients), scaled by 2^q through the exponent bits. Arguments are clamped
// to [-87.3, 88.3], so results stay normal and finite.
SDF_INLINE float sdf_expf(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.3f);
    float q = __builtin_rintf(x * 1.44269504088896341f);
    float s = fmaf(q, -0.693145751953125f, x);
    s = fmaf(q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    u = 1.0f + fmaf(s * s, u, s);
    int32_t bits = ((int32_t)q + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return u * scale;
}

// erf(x) as PyTorch's Vectorized<float>::erf: Abramowitz and Stegun 7.1.26
// (absolute error below 1.5e-7).
SDF_INLINE float sdf_erff(float x) {
    float a = fabsf(x);
    float t = 1.0f / fmaf(0.3275911f, a, 1.0f);
    float r = fmaf(fmaf(fmaf(fmaf(1.061405429f, t, -1.453152027f), t, 1.421413741f), t, -0.284496736f), t, 0.254829592f);
    float e = 1.0f - r * t * sdf_expf(-a * a);
    return copysignf(e, x);
}

SDF_INLINE float sdf_gelu1(float x) { return 0.5f * x * (1.0f + sdf_erff(x * 0.70710678118654752f)); }
SDF_INLINE float sdf_silu1(float x) { return x / (1.0f + sdf_expf(-x)); }

// MARK: - Kernels

SDF_INLINE void sdf_silu_body(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = sdf_silu1(x[i]);
}
SDF_MULTIVERSION(sdf_silu, (const float *x, float *y, long n), (x, y, n))

SDF_INLINE void sdf_relu_body(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];  // NaN stays NaN, as torch.relu
}
SDF_MULTIVERSION(sdf_relu, (const float *x, float *y, long n), (x, y, n))

SDF_INLINE void sdf_quick_gelu_body(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = x[i] / (1.0f + sdf_expf(-1.702f * x[i]));
}
SDF_MULTIVERSION(sdf_quick_gelu, (const float *x, float *y, long n), (x, y, n))

SDF_INLINE void sdf_gelu_body(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = sdf_gelu1(x[i]);
}
SDF_MULTIVERSION(sdf_gelu, (const float *x, float *y, long n), (x, y, n))

SDF_INLINE void sdf_geglu_body(const float *value, const float *gate, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = value[i] * sdf_gelu1(gate[i]);
}
SDF_MULTIVERSION(sdf_geglu, (const float *value, const float *gate, float *y, long n), (value, gate, y, n))

// Reductions keep SDF_LANES partial results so that they vectorise without reassociation flags.
#define SDF_LANES 16

// p[i] = exp(p[i] - max p), and *sum = their sum: softmax before the division.
SDF_INLINE void sdf_softmax_exp_body(float *p, long n, float *sum_out) {
    float lanes[SDF_LANES];
    for (int j = 0; j < SDF_LANES; j++) lanes[j] = -INFINITY;
    long i = 0;
    for (; i + SDF_LANES <= n; i += SDF_LANES)
        for (int j = 0; j < SDF_LANES; j++) lanes[j] = fmaxf(lanes[j], p[i + j]);
    float m = -INFINITY;
    for (; i < n; i++) m = fmaxf(m, p[i]);
    for (int j = 0; j < SDF_LANES; j++) m = fmaxf(m, lanes[j]);

    for (int j = 0; j < SDF_LANES; j++) lanes[j] = 0.0f;
    for (i = 0; i + SDF_LANES <= n; i += SDF_LANES)
        for (int j = 0; j < SDF_LANES; j++) {
            float e = sdf_expf(p[i + j] - m);
            p[i + j] = e;
            lanes[j] += e;
        }
    float sum = 0.0f;
    for (; i < n; i++) {
        float e = sdf_expf(p[i] - m);
        p[i] = e;
        sum += e;
    }
    for (int j = 0; j < SDF_LANES; j++) sum += lanes[j];
    *sum_out = sum;
}
SDF_MULTIVERSION(sdf_softmax_exp, (float *p, long n, float *sum), (p, n, sum))

SDF_INLINE void sdf_softmax_body(float *p, long n) {
    float sum;
    sdf_softmax_exp_body(p, n, &sum);
    float inv = 1.0f / sum;
    for (long i = 0; i < n; i++) p[i] *= inv;
}
SDF_MULTIVERSION(sdf_softmax, (float *p, long n), (p, n))

SDF_INLINE double sdf_sum_lanes(const double *lanes) {
    double s = 0.0;
    for (int j = 0; j < SDF_LANES; j++) s += lanes[j];
    return s;
}

SDF_INLINE void sdf_mean_variance_body(const float *x, long n, float *mean, float *variance) {
    double lanes[SDF_LANES] = {0};
    long i = 0;
    for (; i + SDF_LANES <= n; i += SDF_LANES)
        for (int j = 0; j < SDF_LANES; j++) lanes[j] += x[i + j];
    double sum = sdf_sum_lanes(lanes);
    for (; i < n; i++) sum += x[i];
    double mu = n > 0 ? sum / (double)n : 0.0;
    for (int j = 0; j < SDF_LANES; j++) lanes[j] = 0.0;
    for (i = 0; i + SDF_LANES <= n; i += SDF_LANES)
        for (int j = 0; j < SDF_LANES; j++) {
            double d = (double)x[i + j] - mu;
            lanes[j] += d * d;
        }
    double squares = sdf_sum_lanes(lanes);
    for (; i < n; i++) {
        double d = (double)x[i] - mu;
        squares += d * d;
    }
    *mean = (float)mu;
    *variance = n > 0 ? (float)(squares / (double)n) : 0.0f;
}
SDF_MULTIVERSION(sdf_mean_variance, (const float *x, long n, float *mean, float *variance), (x, n, mean, variance))

SDF_INLINE void sdf_scale_shift_body(const float *x, float *y, long n, float scale, float shift, int silu) {
    if (silu) {
        for (long i = 0; i < n; i++) y[i] = sdf_silu1(fmaf(x[i], scale, shift));
    } else {
        for (long i = 0; i < n; i++) y[i] = fmaf(x[i], scale, shift);
    }
}
SDF_MULTIVERSION(sdf_scale_shift, (const float *x, float *y, long n, float scale, float shift, int silu),
                 (x, y, n, scale, shift, silu))

SDF_INLINE void sdf_f16_to_f32_body(const void *src, float *dst, long n) {
    const unsigned char *bytes = (const unsigned char *)src;
    for (long i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        uint32_t magnitude = (uint32_t)(h & 0x7fff) << 13;
        float f;
        memcpy(&f, &magnitude, sizeof f);
        f *= 5.192296858534828e+33f;  // 2^112 re-biases the exponent and normalises subnormals
        uint32_t out;
        memcpy(&out, &f, sizeof out);
        if (magnitude >= 0x0f800000u) out = magnitude | 0x7f800000u;  // Inf and NaN
        out |= (uint32_t)(h & 0x8000) << 16;
        memcpy(&dst[i], &out, sizeof out);
    }
}
SDF_MULTIVERSION(sdf_f16_to_f32, (const void *src, float *dst, long n), (src, dst, n))

// Rows [i0, i1) of src (m x n, row-major) -> their columns in dst (n x m): dst[j][i] = src[i][j].
// 8 x 8 blocks are transposed in registers (AVX2: unpack, shuffle, lane permute); edges one by one.
#if SDF_X86
SDF_AVX2 static long transpose_avx2(const float *src, long m, long n, long i0, long i1, float *dst) {
    long i = i0;
    for (; i + 8 <= i1; i += 8) {
        long j = 0;
        for (; j + 8 <= n; j += 8) {
            const float *s = src + i * n + j;
            __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + n), r2 = _mm256_loadu_ps(s + 2 * n),
                   r3 = _mm256_loadu_ps(s + 3 * n), r4 = _mm256_loadu_ps(s + 4 * n), r5 = _mm256_loadu_ps(s + 5 * n),
                   r6 = _mm256_loadu_ps(s + 6 * n), r7 = _mm256_loadu_ps(s + 7 * n);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + j * m + i;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_storeu_ps(d + m, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_storeu_ps(d + 2 * m, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_storeu_ps(d + 3 * m, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_storeu_ps(d + 4 * m, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_storeu_ps(d + 5 * m, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_storeu_ps(d + 6 * m, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_storeu_ps(d + 7 * m, _mm256_permute2f128_ps(s3, s7, 0x31));
        }
        for (long r = i; r < i + 8; r++)
            for (long c = j; c < n; c++) dst[c * m + r] = src[r * n + c];
    }
    return i;  // the rows left for the scalar loop
}
#endif

void sdf_transpose(const float *src, long m, long n, long i0, long i1, float *dst) {
    long i = i0;
#if SDF_X86
    if (sdf_cpu_avx2()) i = transpose_avx2(src, m, n, i0, i1, dst);
#endif
    for (; i < i1; i++)
        for (long j = 0; j < n; j++) dst[j * m + i] = src[i * n + j];
}

_Thread_local int sdf_isa_cap = SDF_ISA_AMX;

int sdf_isa_cap_set(int cap) {
    int previous = sdf_isa_cap;
    sdf_isa_cap = cap;
    return previous;
}

const char *sdf_kernel_set(void) { return sdf_cpu_avx512() ? "avx512" : sdf_cpu_avx2() ? "avx2" : "baseline"; }

void sdf_release_free_heap_pages(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

// MARK: - Peak rate

// The machine's multiply-add limit: `iterations` rounds of 12 independent 16-float multiply-adds
// kept in registers (no memory traffic; enough chains to hide the FMA latency), 384 FLOP per
// round. The results go to sink[0..15] so the loop is not optimised away.
typedef float sdf_v16 __attribute__((vector_size(64)));
SDF_INLINE void sdf_fma_peak_body(long iterations, float *sink) {
    sdf_v16 m, c, a[12];
    SDF_UNROLL for (int j = 0; j < 16; j++) { m[j] = 0.9999999f; c[j] = 1e-7f; }
    for (int k = 0; k < 12; k++) SDF_UNROLL for (int j = 0; j < 16; j++) a[k][j] = (float)(k * 16 + j) * 1e-3f;
    for (long i = 0; i < iterations; i++) {
        a[0] = a[0] * m + c; a[1] = a[1] * m + c; a[2] = a[2] * m + c; a[3] = a[3] * m + c;
        a[4] = a[4] * m + c; a[5] = a[5] * m + c; a[6] = a[6] * m + c; a[7] = a[7] * m + c;
        a[8] = a[8] * m + c; a[9] = a[9] * m + c; a[10] = a[10] * m + c; a[11] = a[11] * m + c;
    }
    sdf_v16 total = a[0];
    for (int k = 1; k < 12; k++) total += a[k];
    SDF_UNROLL for (int j = 0; j < 16; j++) sink[j] = total[j];
}
SDF_MULTIVERSION(sdf_fma_peak, (long iterations, float *sink), (iterations, sink))
