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
/// y = max(x, 0).
void sdf_relu(const float *x, float *y, long n);
/// `iterations` x 384 FLOP of register-only multiply-adds (the peak rate); 16 results to `sink`.
void sdf_fma_peak(long iterations, float *sink);
// y = x * sigmoid(1.702 x)
void sdf_quick_gelu(const float *x, float *y, long n);
// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), with PyTorch's vectorised erf (Abramowitz-Stegun 7.1.26).
void sdf_gelu(const float *x, float *y, long n);
// y = value * gelu(gate)
void sdf_geglu(const float *value, const float *gate, float *y, long n);
// In-place softmax of one row: p = exp(p - max) / sum.
void sdf_softmax(float *p, long n);
// exp(p - max p) in place and their sum in *sum (softmax without the division).
void sdf_softmax_exp(float *p, long n, float *sum);
// Mean and biased variance of n floats, accumulated in double precision (two passes).
void sdf_mean_variance(const float *x, long n, float *mean, float *variance);
// y = x * scale + shift, optionally followed by SiLU (fused GroupNorm + SiLU).
void sdf_scale_shift(const float *x, float *y, long n, float scale, float shift, int silu);
// Rows [i0, i1) of src (m x n) -> columns [i0, i1) of dst (n x m), dst[j][i] = src[i][j].
void sdf_transpose(const float *src, long m, long n, long i0, long i1, float *dst);
// IEEE half -> float for n little-endian values (any alignment).
void sdf_f16_to_f32(const void *src, float *dst, long n);

// Winograd F(2x2,3x3) and F(4x4,3x3) transforms for 3x3 stride-1 padding-1 convolutions
// (see Winograd.c for the layouts). Filters: weights (O, C, 3, 3) -> u (P, O, C) for output
// channels [o0, o1). Inputs: tiles [tile_first, tile_first + tile_count) of one image (C, H, W)
// -> the first tile_count columns of v (P, C, ld) for channels [c0, c1). Outputs: the first
// tile_count columns of m (P, O, ld) -> image (O, H, W) plus bias for output channels [o0, o1),
// then plus `residual` (O, H, W; may be NULL) and through ReLU when `relu` is not 0.
// P = 16 for F(2,3), 36 for F(4,3); `stride`: floats from one position to the next in v or m
// (at least C x ld or O x ld; more keeps the positions out of one cache set).
void sdf_winograd23_filters(const float *weights, long outputs, long inputs, long o0, long o1, float *u);
void sdf_winograd23_inputs(const float *image, long height, long width, long tiles_x, long tile_first, long tile_count,
                           long c0, long c1, long stride, long ld, float *v);
// The F(2,3) input tiles [tile_first, tile_first + tile_count) of the nearest 2x upsampling of
// one image (C, height, width), numbered over the upsampling (width tiles per row), read from the
// image itself; positions in row or column 2, exactly zero there, are left unwritten.
void sdf_winograd23_inputs_upsampled(const float *image, long height, long width, long tile_first, long tile_count,
                                     long c0, long c1, long stride, long ld, float *v);
void sdf_winograd23_outputs(const float *m, long stride, long tile_count, long ld, long tile_first, long tiles_x,
                            long height, long width, const float *bias, const float *residual, int relu, long o0, long o1,
                            float *image);
void sdf_winograd43_filters(const float *weights, long outputs, long inputs, long o0, long o1, float *u);
void sdf_winograd43_inputs(const float *image, long height, long width, long tiles_x, long tile_first, long tile_count,
                           long c0, long c1, long stride, long ld, float *v);
void sdf_winograd43_outputs(const float *m, long stride, long tile_count, long ld, long tile_first, long tiles_x,
                            long height, long width, const float *bias, const float *residual, int relu, long o0, long o1,
                            float *image);

// Winograd F(2x2,3x3) for images stored channels last, (height, width, channels) (Winograd.c):
// tiles are numbered over the image convolved, ceil(width / 2) per row (of its nearest 2x
// upsampling with `upsampled`: tile pixels are read from the image itself). Inputs: tiles
// [tile_first, tile_first + tile_count) -> v (16, tile_count, channels), positions `stride`
// floats apart; `zero`: `channels` zeros. Outputs: m (16, tile_count, outputs) -> the tiles'
// pixels of image (height, width, outputs), plus bias, plus `residual` (the image's shape; may be
// NULL), through ReLU when `relu` is not 0; `scratch`: 12 x `outputs` floats for pixels beyond the image.
void sdf_winograd23_inputs_nhwc(const float *image, long height, long width, long channels, int upsampled, long tile_first,
                                long tile_count, const float *zero, long stride, float *v);
void sdf_winograd23_outputs_nhwc(const float *m, long stride, long tile_first, long tile_count, long height, long width,
                                 long outputs, const float *bias, const float *residual, int relu, float *scratch, float *image);

// Winograd F(2x3, 3x3) channels last (F(2,3) down the columns, F(3,3) along the rows): the same
// interfaces for 4x5 input tiles and 2x3 output tiles, 20 positions (e = 5 i + j), ceil(width / 3)
// tiles per row. Filters: weights (O, C, 3, 3) -> u (positions, C, O) for output channels
// [o0, o1), with `cols` 4 the F(2x2) positions (16), with 5 the F(2x3) ones.
void sdf_winograd_filters_nhwc(const float *weights, long outputs, long inputs, long cols, long o0, long o1, float *u);
void sdf_winograd2x3_inputs_nhwc(const float *image, long height, long width, long channels, long tile_first, long tile_count,
                                 const float *zero, long stride, float *v);
void sdf_winograd2x3_outputs_nhwc(const float *m, long stride, long tile_first, long tile_count, long height, long width,
                                  long outputs, const float *bias, const float *residual, int relu, float *scratch, float *image);

// Direct 3x3 convolution, stride 1, padding 1, for few output channels (Conv.c): output rows
// [y0, y1) of one image (channels, height, width) -> out (outputs, height, width), plus bias (may
// be NULL); weights (outputs, channels, 3, 3); `zero`: `width` zeros.
void sdf_conv3x3_few(const float *image, long channels, long height, long width, const float *weights, long outputs,
                     const float *bias, const float *zero, long y0, long y1, float *out);

// The same for an image stored channels last, (height, width, channels), weights (outputs, 3, 3,
// channels), into rows [y0, y1) of out (outputs, height, width).
void sdf_conv3x3_few_nhwc(const float *image, long channels, long height, long width, const float *weights, long outputs,
                          const float *bias, long y0, long y1, float *out);

// One attention head, register-blocked (Attention.c). Keys are first packed into panels of 32
// (kp: ceil(keys / 32) * 32 * d floats, zero-padded). Scores: scale * q (rows x d, row stride
// q_stride) times the packed keys -> scores (rows x ceil(keys / 32) * 32, row stride
// scores_stride). Values: p (rows x keys) times v (keys x width_padded, contiguous, zero-padded to
// a multiple of 48) -> out (rows x width, row stride out_stride).
void sdf_attention_pack_keys(const float *k, long k_stride, long keys, long d, float *kp);
void sdf_attention_scores(const float *q, long q_stride, const float *kp, long d, long rows, long keys,
                          float scale, float *scores, long scores_stride);
void sdf_attention_values(const float *p, long p_stride, const float *v, long width_padded, long keys, long rows, long width,
                          float *out, long out_stride);

// The attention kernels with bfloat16 operands and float32 accumulation (fast mode; only where
// sdf_gemm_bf16_available()). Keys pack into ceil(keys / 32) * 32 * ceil(d / 2) pairs, values
// into ceil(keys / 2) * width_padded pairs (width_padded a multiple of 48); `scratch` holds
// 8 * ceil(keys / 2) pairs. d <= 1024.
void sdf_attention_pack_keys_bf16(const float *k, long k_stride, long keys, long d, uint32_t *kp);
void sdf_attention_pack_values_bf16(const float *v, long v_stride, long keys, long width, long width_padded, uint32_t *vp);
void sdf_attention_scores_bf16(const float *q, long q_stride, const uint32_t *kp, long d, long rows, long keys,
                               float scale, float *scores, long scores_stride);
void sdf_attention_values_bf16(const float *p, long p_stride, const uint32_t *vp, long width_padded, long keys,
                               long rows, long width, float *out, long out_stride, uint32_t *scratch);

// C = alpha * op(A) op(B) + beta * C (row-major, op = transpose when trans_x), with A and B
// rounded to bfloat16 and products accumulated in float32 (Gemm.c). Uses AMX tiles where
// sdf_gemm_bf16_amx_available(), else AVX-512 BF16 where sdf_gemm_bf16_available() (a portable
// loop with the same rounding elsewhere). Returns 0, or -1 when its packing buffers cannot be
// allocated. sdf_gemm_bf16_avx512 is the AVX-512 BF16 kernel alone (-2 without it), for tests.
int sdf_gemm_bf16_available(void);
int sdf_gemm_bf16_amx_available(void);
int sdf_gemm_bf16(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                  long ldb, float beta, float *c, long ldc);
int sdf_gemm_bf16_avx512(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                         const float *b, long ldb, float beta, float *c, long ldc);
// The same product in float32 with AVX-512 FMA (Gemm.c), only where sdf_gemm_f32_available().
// Returns 0, -1 when its packing buffers cannot be allocated, -2 on other CPUs.
int sdf_gemm_f32_available(void);
int sdf_gemm_f32(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                 long ldb, float beta, float *c, long ldc);

// Memory-mapped files (Files.c): registered mappings name the file when reading one fails
// with SIGBUS (it was truncated or replaced while mapped); the handler prints that and exits 1.
void sdf_mapping_register(const void *start, unsigned long size, const char *path);
void sdf_mapping_unregister(const void *start);
void sdf_install_sigbus_handler(void);
// An unnamed file in `folder` (O_TMPFILE), for AtomicFile: a process killed while writing it
// leaves nothing behind. -1 where the file system cannot (then AtomicFile names it at once).
int sdf_open_anonymous_file(const char *folder);

// Gives the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere).
void sdf_release_free_heap_pages(void);

// The vector kernels this CPU runs: "avx512", "avx2" or "baseline" (Dispatch.h's run-time choice).
const char *sdf_kernel_set(void);

// Instruction-set caps, narrowest first: kernels on this thread use at most the level set here
// (default: everything the CPU has), so that the code other CPU classes run can be run and
// measured on a wider CPU. Returns the previous cap.
enum { SDF_ISA_BASELINE = 0, SDF_ISA_AVX2 = 1, SDF_ISA_AVX512 = 2, SDF_ISA_AVX512_BF16 = 3, SDF_ISA_AMX = 4 };
int sdf_isa_cap_set(int cap);

#endif
