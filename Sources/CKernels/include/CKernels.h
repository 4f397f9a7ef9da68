// Vectorised element-wise kernels for TensorCore.
//
// Each kernel is compiled for AVX-512, AVX2+FMA and baseline x86-64 (or the host's baseline
// elsewhere) and picks the best version at run time, so binaries run on any x86-64 machine.
// Swift splits the work across threads and calls these on contiguous chunks.
#ifndef SDFLOW_CKERNELS_H
#define SDFLOW_CKERNELS_H

#include <stdint.h>

// y = x * sigmoid(x)
void sdf_silu(const float *x, float *y, long n);
// y = x * sigmoid(1.702 x)
void sdf_quick_gelu(const float *x, float *y, long n);
// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), with PyTorch's vectorised erf (Abramowitz-Stegun 7.1.26).
void sdf_gelu(const float *x, float *y, long n);
// y = value * gelu(gate)
void sdf_geglu(const float *value, const float *gate, float *y, long n);
// In-place softmax of one row: p = exp(p - max) / sum.
void sdf_softmax(float *p, long n);
// Mean and biased variance of n floats, accumulated in double precision (two passes).
void sdf_mean_variance(const float *x, long n, float *mean, float *variance);
// y = x * scale + shift, optionally followed by SiLU (fused GroupNorm + SiLU).
void sdf_scale_shift(const float *x, float *y, long n, float scale, float shift, int silu);
// IEEE half -> float for n little-endian values (any alignment).
void sdf_f16_to_f32(const void *src, float *dst, long n);

#endif
