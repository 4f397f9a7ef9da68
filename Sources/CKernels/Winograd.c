// Winograd minimal filtering for 3x3 convolutions, stride 1 (Lavin & Gray 2016).
//
// F(2x2, 3x3): 4x4 input tiles, 2x2 output tiles, 16 multiplies per output pair instead of 36.
// F(4x4, 3x3): 6x6 input tiles, 4x4 output tiles, 36 multiplies per 16 outputs instead of 144.
// The transforms are done here; the 16 (or 36) element-wise products summed over channels are
// GEMMs done by the caller with BLAS. Layouts: U[e][o][c] (transformed filters),
// V[e][c][t] (transformed input tiles), M[e][o][t] (products), e = position within the tile.
// V and M rows hold `ld` tiles, and positions are `position_stride` floats apart (at least C x ld
// or O x ld); the functions fill or read `tile_count` of them.
//
// Input and output transforms walk a row of tiles at a time: tiles wholly inside the image
// read and write the image directly in a loop that vectorises across tiles; tiles on the border
// go through a zero-padded copy.
#include "CKernels.h"
#include "Dispatch.h"

#include <string.h>
#if SDF_X86
#include <immintrin.h>
#endif

// The 6x6 F(4,3) input transform is too large for the vectoriser on some of the instruction sets
// the kernels are cloned for; the plain loop is correct there, so its "not vectorized" remark is noise.
#pragma clang diagnostic ignored "-Wpass-failed"

// An n x n input tile whose top-left pixel is (y0, x0), zero outside the image (padding).
static inline void load_tile(const float *plane, long height, long width, long y0, long x0, int n, float *d) {
    for (int i = 0; i < n; i++) {
        long y = y0 + i;
        for (int j = 0; j < n; j++) {
            long x = x0 + j;
            d[i * n + j] = (y >= 0 && y < height && x >= 0 && x < width) ? plane[y * width + x] : 0.0f;
        }
    }
}

// The tiles of one tile row within a chunk: row ty, columns [tx0, tx1), the first of them at
// `column` of the chunk; `inner0..inner1` are the columns that need no bounds checks.
typedef struct {
    long ty, tx0, tx1, column, inner0, inner1;
} TileRow;

static inline TileRow tile_row(long tile_first, long k, long tile_count, long tiles_x) {
    TileRow r;
    r.ty = (tile_first + k) / tiles_x;
    r.tx0 = (tile_first + k) % tiles_x;
    long run = tiles_x - r.tx0 < tile_count - k ? tiles_x - r.tx0 : tile_count - k;
    r.tx1 = r.tx0 + run;
    r.column = k;
    return r;
}

static inline void set_inner(TileRow *r, int rows_inside, long lo, long hi) {
    r->inner0 = lo > r->tx0 ? lo : r->tx0;
    r->inner1 = hi < r->tx1 ? hi : r->tx1;
    if (!rows_inside || r->inner1 < r->inner0) r->inner0 = r->inner1 = r->tx1;
}

// Input tiles of size n starting at (m ty - 1, m tx - 1) that lie wholly inside the image.
static inline void inner_inputs(TileRow *r, long m, long n, long height, long width) {
    long y0 = m * r->ty - 1;
    set_inner(r, y0 >= 0 && y0 + n <= height, 1, width + 1 - n >= 0 ? (width + 1 - n) / m + 1 : 0);
}

// Output tiles of size m starting at (m ty, m tx) that lie wholly inside the image.
static inline void inner_outputs(TileRow *r, long m, long height, long width) {
    set_inner(r, m * r->ty + m <= height, 0, width / m);
}

// Defines name_body: the input transform for tiles of m x m outputs read from n x n input
// windows, `transform(d, row_stride, out, stride)` for one tile; `blocks(row, width, out, stride,
// tx0, tx1)` may transform the inner tiles from tx0 on in blocks of its own and returns where it
// stopped (`no_blocks`: at tx0); `target`: the body's target attribute when `blocks` needs one.
#define WINOGRAD_INPUTS_BODY(name, m, n, transform, blocks, target)                                              \
    target SDF_INLINE void name##_body(const float *image, long height, long width, long tiles_x, long tile_first,        \
                                long tile_count, long c0, long c1, long stride, long ld, float *v) {               \
        for (long k = 0; k < tile_count;) {                                                                        \
            TileRow r = tile_row(tile_first, k, tile_count, tiles_x);                                              \
            inner_inputs(&r, m, n, height, width);                                                                 \
            for (long c = c0; c < c1; c++) {                                                                       \
                const float *plane = image + c * height * width;                                                   \
                float *out = v + c * ld + r.column - r.tx0;                                                        \
                float d[n * n];                                                                                    \
                for (long tx = r.tx0; tx < r.inner0; tx++) {                                                       \
                    load_tile(plane, height, width, m * r.ty - 1, m * tx - 1, n, d);                               \
                    transform(d, n, out + tx, stride);                                                             \
                }                                                                                                  \
                const float *row = plane + (m * r.ty - 1) * width - 1;                                             \
                long done = blocks(row, width, out, stride, r.inner0, r.inner1);                                   \
                _Pragma("clang loop vectorize(assume_safety)") /* tiles write disjoint columns */                  \
                for (long tx = done; tx < r.inner1; tx++) transform(row + m * tx, width, out + tx, stride);       \
                for (long tx = r.inner1; tx < r.tx1; tx++) {                                                       \
                    load_tile(plane, height, width, m * r.ty - 1, m * tx - 1, n, d);                               \
                    transform(d, n, out + tx, stride);                                                             \
                }                                                                                                  \
            }                                                                                                      \
            k += r.tx1 - r.tx0;                                                                                    \
        }                                                                                                          \
    }
#define WINOGRAD_INPUTS_PARAMS                                                                                    \
    (const float *image, long height, long width, long tiles_x, long tile_first, long tile_count, long c0, long c1, \
     long stride, long ld, float *v)
#define WINOGRAD_INPUTS_ARGS (image, height, width, tiles_x, tile_first, tile_count, c0, c1, stride, ld, v)

SDF_INLINE long no_blocks(const float *row, long width, float *out, long stride, long tx0, long tx1) {
    (void)row, (void)width, (void)out, (void)stride, (void)tx1;
    return tx0;
}

// y[x0..x1) of one row += residual[x0..x1) (when there is one), then ReLU (when asked).
SDF_INLINE void finish_range(float *y, const float *residual, long x0, long x1, int relu) {
    if (residual)
        for (long x = x0; x < x1; x++) y[x] += residual[x];
    if (relu)
        for (long x = x0; x < x1; x++) y[x] = y[x] > 0 ? y[x] : 0;
}

// Defines name_body: the output transform for m x m output tiles, `transform(src, stride, bias,
// y, row_stride)` for one tile, then the residual and ReLU on the rows just written, while they
// are in the cache. `blocks(src, stride, bias, residual, relu, y, row_stride, tx0, tx1)` may do
// the inner tiles from tx0 on, residual and ReLU included, in blocks of its own, and returns
// where it stopped (`no_output_blocks`: at tx0); `target` is its target attribute.
#define WINOGRAD_OUTPUTS_BODY(name, m, transform, blocks, target)                                                  \
    target SDF_INLINE void name##_body(const float *mm, long stride, long tile_count, long ld, long tile_first,     \
                                       long tiles_x, long height, long width, const float *bias,                   \
                                       const float *residual, int relu, long o0, long o1, float *image) {          \
        for (long k = 0; k < tile_count;) {                                                                        \
            TileRow r = tile_row(tile_first, k, tile_count, tiles_x);                                              \
            inner_outputs(&r, m, height, width);                                                                   \
            for (long o = o0; o < o1; o++) {                                                                       \
                float b = bias ? bias[o] : 0.0f;                                                                   \
                long offset = (o * height + m * r.ty) * width; /* of the tile row's first output row */            \
                float *plane = image + offset;                                                                     \
                const float *res = residual ? residual + offset : 0;                                               \
                const float *src = mm + o * ld + r.column - r.tx0;                                                 \
                long done = blocks(src, stride, b, res, relu, plane, width, r.inner0, r.inner1);                   \
                _Pragma("clang loop vectorize(assume_safety)") /* tiles write disjoint columns */                  \
                for (long tx = done; tx < r.inner1; tx++) transform(src + tx, stride, b, plane + m * tx, width);   \
                for (long tx = r.tx0; tx < r.tx1; tx++) {                                                          \
                    if (tx == r.inner0) tx = r.inner1;                                                             \
                    if (tx == r.tx1) break;                                                                        \
                    float y[m * m];                                                                                \
                    transform(src + tx, stride, b, y, m);                                                          \
                    for (int i = 0; i < m && m * r.ty + i < height; i++)                                           \
                        for (int j = 0; j < m && m * tx + j < width; j++) plane[i * width + m * tx + j] = y[i * m + j]; \
                }                                                                                                  \
                if (residual || relu) { /* the columns `blocks` did not finish */                                  \
                    long end = m * r.tx1 < width ? m * r.tx1 : width;                                              \
                    long inner = m * r.inner0 < end ? m * r.inner0 : end;                                          \
                    for (long i = 0; i < m && m * r.ty + i < height; i++) {                                        \
                        finish_range(plane + i * width, res ? res + i * width : 0, m * r.tx0, inner, relu);        \
                        finish_range(plane + i * width, res ? res + i * width : 0, m * done, end, relu);           \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            k += r.tx1 - r.tx0;                                                                                    \
        }                                                                                                          \
    }
#define WINOGRAD_OUTPUTS_PARAMS                                                                                    \
    (const float *mm, long stride, long tile_count, long ld, long tile_first, long tiles_x, long height, long width, \
     const float *bias, const float *residual, int relu, long o0, long o1, float *image)
#define WINOGRAD_OUTPUTS_ARGS (mm, stride, tile_count, ld, tile_first, tiles_x, height, width, bias, residual, relu, o0, o1, image)

SDF_INLINE long no_output_blocks(const float *src, long stride, float bias, const float *residual, int relu, float *y,
                                 long width, long tx0, long tx1) {
    (void)src, (void)stride, (void)bias, (void)residual, (void)relu, (void)y, (void)width, (void)tx1;
    return tx0;
}

// Filters for output channels [o0, o1): u[e][o][c] = (G g G^T)[e] for the 3x3 filter g of (o, c),
// with G (M x 3). 16 input channels at a time, so the arithmetic runs across channels in vectors.
#define WINOGRAD_FILTERS(name, M, G)                                                                              \
    SDF_INLINE void name##_body(const float *weights, long outputs, long inputs, long o0, long o1, float *u) {     \
        for (long o = o0; o < o1; o++) {                                                                           \
            for (long c0 = 0; c0 < inputs; c0 += 16) {                                                             \
                long n = inputs - c0 < 16 ? inputs - c0 : 16;                                                      \
                float g[9][16] = {{0}};                                                                            \
                for (long c = 0; c < n; c++)                                                                       \
                    for (int k = 0; k < 9; k++) g[k][c] = weights[(o * inputs + c0 + c) * 9 + k];                  \
                for (int i = 0; i < M; i++) {                                                                      \
                    float t[3][16]; /* row i of G g */                                                             \
                    SDF_UNROLL for (int j = 0; j < 3; j++)                                                                    \
                        SDF_UNROLL for (int c = 0; c < 16; c++)                                                               \
                            t[j][c] = G[i][0] * g[j][c] + G[i][1] * g[3 + j][c] + G[i][2] * g[6 + j][c];           \
                    for (int j = 0; j < M; j++) {                                                                  \
                        float *dst = u + ((long)(i * M + j) * outputs + o) * inputs + c0;                          \
                        for (long c = 0; c < n; c++) dst[c] = G[j][0] * t[0][c] + G[j][1] * t[1][c] + G[j][2] * t[2][c]; \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    SDF_MULTIVERSION(name, (const float *weights, long outputs, long inputs, long o0, long o1, float *u),         \
                     (weights, outputs, inputs, o0, o1, u))

// MARK: - F(2x2, 3x3)

// G (4x3) = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]]; U = G g G^T.
static const float G23[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
WINOGRAD_FILTERS(sdf_winograd23_filters, 4, G23)

// B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]; V = B^T d B for the 4x4 tile at d
// (row stride w), written to out[e * stride].
SDF_INLINE void input23(const float *d, long w, float *out, long stride) {
    float t[4][4];
    SDF_UNROLL for (int j = 0; j < 4; j++) {
        float d0 = d[j], d1 = d[w + j], d2 = d[2 * w + j], d3 = d[3 * w + j];
        t[0][j] = d0 - d2;
        t[1][j] = d1 + d2;
        t[2][j] = d2 - d1;
        t[3][j] = d1 - d3;
    }
    SDF_UNROLL for (int i = 0; i < 4; i++) {
        out[(i * 4 + 0) * stride] = t[i][0] - t[i][2];
        out[(i * 4 + 1) * stride] = t[i][1] + t[i][2];
        out[(i * 4 + 2) * stride] = t[i][2] - t[i][1];
        out[(i * 4 + 3) * stride] = t[i][1] - t[i][3];
    }
}
WINOGRAD_INPUTS_BODY(winograd23_inputs, 2, 4, input23, no_blocks, )

#if SDF_X86
// The first n lanes of a vector of 16 (none for n <= 0, all for n >= 16).
SDF_AVX512 SDF_INLINE __mmask16 first_lanes(long n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// input23 for 16 tiles at once, tiles [tx0, tx1) (the last block masked): the four columns of each
// input row are the even and odd elements of two unaligned loads (the compiler's vectorisation of
// input23 gathers them less directly and ran at half this speed on a Zen 4).
SDF_AVX512 SDF_INLINE long input23_blocks(const float *row, long width, float *out, long stride, long tx0, long tx1) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (long tx = tx0; tx < tx1; tx += 16) {
        long n = tx1 - tx;  // tiles left; the k-th reads floats 2k .. 2k + 3 of each row from p
        __mmask16 ma = first_lanes(2 * n + 2), mb = first_lanes(2 * n - 14), ma2 = first_lanes(2 * n), mb2 = first_lanes(2 * n - 16);
        __mmask16 mo = first_lanes(n);
        __m512 d[4][4];  // d[i][j]: row i, column j of the 16 tiles
        SDF_UNROLL for (int i = 0; i < 4; i++) {
            const float *p = row + i * width + 2 * tx;
            __m512 a = _mm512_maskz_loadu_ps(ma, p), b = _mm512_maskz_loadu_ps(mb, p + 16);
            __m512 a2 = _mm512_maskz_loadu_ps(ma2, p + 2), b2 = _mm512_maskz_loadu_ps(mb2, p + 18);
            d[i][0] = _mm512_permutex2var_ps(a, even, b);
            d[i][1] = _mm512_permutex2var_ps(a, odd, b);
            d[i][2] = _mm512_permutex2var_ps(a2, even, b2);
            d[i][3] = _mm512_permutex2var_ps(a2, odd, b2);
        }
        __m512 t[4][4];
        SDF_UNROLL for (int j = 0; j < 4; j++) {
            t[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
            t[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
            t[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
            t[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
        }
        SDF_UNROLL for (int i = 0; i < 4; i++) {
            _mm512_mask_storeu_ps(out + (i * 4 + 0) * stride + tx, mo, _mm512_sub_ps(t[i][0], t[i][2]));
            _mm512_mask_storeu_ps(out + (i * 4 + 1) * stride + tx, mo, _mm512_add_ps(t[i][1], t[i][2]));
            _mm512_mask_storeu_ps(out + (i * 4 + 2) * stride + tx, mo, _mm512_sub_ps(t[i][2], t[i][1]));
            _mm512_mask_storeu_ps(out + (i * 4 + 3) * stride + tx, mo, _mm512_sub_ps(t[i][1], t[i][3]));
        }
    }
    return tx1;
}
WINOGRAD_INPUTS_BODY(winograd23_inputs_blocked, 2, 4, input23, input23_blocks, SDF_AVX512)
#endif
SDF_MULTIVERSION_BODIES(sdf_winograd23_inputs, winograd23_inputs_blocked_body, winograd23_inputs_body, WINOGRAD_INPUTS_PARAMS,
                        WINOGRAD_INPUTS_ARGS)

// F(2,3) input tiles of the nearest 2x upsampling of `image` (C, height, width), without making
// it: tile (ty, tx) of the upsampling reads rows ty-1, ty, ty, ty+1 and columns tx-1, tx, tx, tx+1
// of `image` (zero outside), so its rows 1 and 2 are equal, and so are its columns 1 and 2. The
// positions in row or column 2 are then exactly zero and are not written (their products are
// skipped); the others get what input23 computes from the upsampled tile, operation for operation.
// Tiles are numbered over the upsampling: `width` per row.
SDF_INLINE void sdf_winograd23_inputs_upsampled_body(const float *image, long height, long width, long tile_first,
                                                     long tile_count, long c0, long c1, long stride, long ld, float *v) {
    for (long k = 0; k < tile_count;) {
        TileRow r = tile_row(tile_first, k, tile_count, width);
        for (long c = c0; c < c1; c++) {
            const float *plane = image + c * height * width;
            const float *above = r.ty > 0 ? plane + (r.ty - 1) * width : 0, *row = plane + r.ty * width;
            const float *below = r.ty + 1 < height ? plane + (r.ty + 1) * width : 0;
            float *out = v + c * ld + r.column - r.tx0;
            for (long tx = r.tx0; tx < r.tx1; tx++) {
                float t[3][3];  // rows 0, 1 and 3 of B^T d, at columns tx - 1, tx, tx + 1
                SDF_UNROLL for (int q = 0; q < 3; q++) {
                    long x = tx - 1 + q;
                    int inside = x >= 0 && x < width;
                    float a = inside && above ? above[x] : 0, b = inside ? row[x] : 0, d = inside && below ? below[x] : 0;
                    t[0][q] = a - b;
                    t[1][q] = b + b;
                    t[2][q] = b - d;
                }
                SDF_UNROLL for (int i = 0; i < 3; i++) {
                    float *o = out + (i == 2 ? 3 : i) * 4 * stride + tx;
                    o[0] = t[i][0] - t[i][1];
                    o[stride] = t[i][1] + t[i][1];
                    o[3 * stride] = t[i][1] - t[i][2];
                }
            }
        }
        k += r.tx1 - r.tx0;
    }
}
SDF_MULTIVERSION(sdf_winograd23_inputs_upsampled,
                 (const float *image, long height, long width, long tile_first, long tile_count, long c0, long c1,
                  long stride, long ld, float *v),
                 (image, height, width, tile_first, tile_count, c0, c1, stride, ld, v))

// A^T = [[1,1,1,0],[0,1,-1,-1]]; Y = A^T M A + bias for the tile whose products are src[e * stride],
// written to y (row stride w).
SDF_INLINE void output23(const float *src, long stride, float bias, float *y, long w) {
    float x[16];
    SDF_UNROLL for (int e = 0; e < 16; e++) x[e] = src[e * stride];
    float t[2][4];
    SDF_UNROLL for (int j = 0; j < 4; j++) {
        t[0][j] = x[j] + x[4 + j] + x[8 + j];
        t[1][j] = x[4 + j] - x[8 + j] - x[12 + j];
    }
    SDF_UNROLL for (int i = 0; i < 2; i++) {
        y[i * w + 0] = t[i][0] + t[i][1] + t[i][2] + bias;
        y[i * w + 1] = t[i][1] - t[i][2] - t[i][3] + bias;
    }
}
WINOGRAD_OUTPUTS_BODY(winograd23_outputs, 2, output23, no_output_blocks, )

#if SDF_X86
// output23 for 16 tiles at once, tiles [tx0, tx1) (the last block masked), with the residual and
// ReLU: the two outputs of each tile row are interleaved in registers and stored as whole vectors.
// Same operations in the same order as output23 and finish_outputs, so the same results.
SDF_AVX512 SDF_INLINE long output23_blocks(const float *src, long stride, float bias, const float *residual, int relu,
                                           float *y, long width, long tx0, long tx1) {
    const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 b = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    for (long tx = tx0; tx < tx1; tx += 16) {
        long n = tx1 - tx;  // tiles left: n products per position, 2n outputs per row
        __mmask16 mx = first_lanes(n), m0 = first_lanes(2 * n), m1 = first_lanes(2 * n - 16);
        __m512 x[16];
        SDF_UNROLL for (int e = 0; e < 16; e++) x[e] = _mm512_maskz_loadu_ps(mx, src + e * stride + tx);
        __m512 t[2][4];
        SDF_UNROLL for (int j = 0; j < 4; j++) {
            t[0][j] = _mm512_add_ps(_mm512_add_ps(x[j], x[4 + j]), x[8 + j]);
            t[1][j] = _mm512_sub_ps(_mm512_sub_ps(x[4 + j], x[8 + j]), x[12 + j]);
        }
        SDF_UNROLL for (int i = 0; i < 2; i++) {
            __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2]), b);
            __m512 y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t[i][1], t[i][2]), t[i][3]), b);
            __m512 first = _mm512_permutex2var_ps(y0, low, y1), second = _mm512_permutex2var_ps(y0, high, y1);
            float *row = y + i * width + 2 * tx;
            if (residual) {
                const float *r = residual + i * width + 2 * tx;
                first = _mm512_add_ps(first, _mm512_maskz_loadu_ps(m0, r));
                second = _mm512_add_ps(second, _mm512_maskz_loadu_ps(m1, r + 16));
            }
            if (relu) {
                first = _mm512_max_ps(first, zero);
                second = _mm512_max_ps(second, zero);
            }
            _mm512_mask_storeu_ps(row, m0, first);
            _mm512_mask_storeu_ps(row + 16, m1, second);
        }
    }
    return tx1;
}
WINOGRAD_OUTPUTS_BODY(winograd23_outputs_blocked, 2, output23, output23_blocks, SDF_AVX512)
#endif
SDF_MULTIVERSION_BODIES(sdf_winograd23_outputs, winograd23_outputs_blocked_body, winograd23_outputs_body,
                        WINOGRAD_OUTPUTS_PARAMS, WINOGRAD_OUTPUTS_ARGS)

// MARK: - F(4x4, 3x3)

// G (6x3) for points 0, +-1, +-2, inf (Lavin & Gray):
// [[1/4,0,0],[-1/6,-1/6,-1/6],[-1/6,1/6,-1/6],[1/24,1/12,1/6],[1/24,-1/12,1/6],[0,0,1]].
static const float G43[6][3] = {
    {1.0f / 4, 0, 0}, {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1},
};

WINOGRAD_FILTERS(sdf_winograd43_filters, 6, G43)

// B^T (6x6) = [[4,0,-5,0,1,0],[0,-4,-4,1,1,0],[0,4,-4,-1,1,0],[0,-2,-1,2,1,0],[0,2,-1,-2,1,0],[0,4,0,-5,0,1]].
SDF_INLINE void bt43(const float *d, long step, float *r) {
    float d0 = d[0], d1 = d[step], d2 = d[2 * step], d3 = d[3 * step], d4 = d[4 * step], d5 = d[5 * step];
    r[0] = 4 * d0 - 5 * d2 + d4;
    r[1] = -4 * d1 - 4 * d2 + d3 + d4;
    r[2] = 4 * d1 - 4 * d2 - d3 + d4;
    r[3] = -2 * d1 - d2 + 2 * d3 + d4;
    r[4] = 2 * d1 - d2 - 2 * d3 + d4;
    r[5] = 4 * d1 - 5 * d3 + d5;
}

// V = B^T d B for the 6x6 tile at d (row stride w), written to out[e * stride].
SDF_INLINE void input43(const float *d, long w, float *out, long stride) {
    float t[6][6], r[6];
    SDF_UNROLL for (int j = 0; j < 6; j++) {
        bt43(d + j, w, r);
        SDF_UNROLL for (int i = 0; i < 6; i++) t[i][j] = r[i];
    }
    SDF_UNROLL for (int i = 0; i < 6; i++) {
        bt43(&t[i][0], 1, r);
        SDF_UNROLL for (int j = 0; j < 6; j++) out[(i * 6 + j) * stride] = r[j];
    }
}
WINOGRAD_INPUTS_BODY(sdf_winograd43_inputs, 4, 6, input43, no_blocks, )
SDF_MULTIVERSION(sdf_winograd43_inputs, WINOGRAD_INPUTS_PARAMS, WINOGRAD_INPUTS_ARGS)

// A^T (4x6) = [[1,1,1,1,1,0],[0,1,-1,2,-2,0],[0,1,1,4,4,0],[0,1,-1,8,-8,1]].
SDF_INLINE void at43(const float *x, long step, float *r) {
    float x0 = x[0], x1 = x[step], x2 = x[2 * step], x3 = x[3 * step], x4 = x[4 * step], x5 = x[5 * step];
    r[0] = x0 + x1 + x2 + x3 + x4;
    r[1] = x1 - x2 + 2 * x3 - 2 * x4;
    r[2] = x1 + x2 + 4 * x3 + 4 * x4;
    r[3] = x1 - x2 + 8 * x3 - 8 * x4 + x5;
}

// Y = A^T M A + bias for the tile whose products are src[e * stride], written to y (row stride w).
SDF_INLINE void output43(const float *src, long stride, float bias, float *y, long w) {
    float x[36];
    for (int e = 0; e < 36; e++) x[e] = src[e * stride];
    float t[4][6], r[4];
    SDF_UNROLL for (int j = 0; j < 6; j++) {
        at43(x + j, 6, r);
        SDF_UNROLL for (int i = 0; i < 4; i++) t[i][j] = r[i];
    }
    SDF_UNROLL for (int i = 0; i < 4; i++) {
        at43(&t[i][0], 1, r);
        SDF_UNROLL for (int j = 0; j < 4; j++) y[i * w + j] = r[j] + bias;
    }
}
WINOGRAD_OUTPUTS_BODY(sdf_winograd43_outputs, 4, output43, no_output_blocks, )
SDF_MULTIVERSION(sdf_winograd43_outputs, WINOGRAD_OUTPUTS_PARAMS, WINOGRAD_OUTPUTS_ARGS)


// MARK: - F(2x2, 3x3) channels last

// The same transforms for images stored channels last, (height, width, channels): a pixel's
// channels are contiguous, so each transform runs across channels in whole vectors, with aligned
// loads that neither straddle cache lines nor need permutes, and the rows read are long runs of
// memory. Layouts: V[e][k][c] and M[e][k][o] (tile k of the chunk, `stride` floats from one
// position to the next), so the product per position is V[e] (tiles x C) x U[e] (C x O).
// Tiles are numbered over the image convolved (its nearest 2x upsampling with `upsampled`),
// ceil(width / 2) per row.

// Pointers to the 4x4 input pixels of tile (ty, tx) of the image convolved, `zero` (a pixel of
// zeros) outside it; with `upsampled`, pixel (y, x) of the upsampling is (y / 2, x / 2) here.
SDF_INLINE void tile_pixels_nhwc(const float *image, long height, long width, long channels, int upsampled, long ty, long tx,
                                 const float *zero, const float *p[4][4]) {
    long scale = upsampled ? 2 : 1, h = scale * height, w = scale * width;
    for (int i = 0; i < 4; i++) {
        long y = 2 * ty - 1 + i;
        for (int j = 0; j < 4; j++) {
            long x = 2 * tx - 1 + j;
            p[i][j] = y >= 0 && y < h && x >= 0 && x < w ? image + ((y / scale) * width + x / scale) * channels : zero;
        }
    }
}

SDF_INLINE void sdf_winograd23_inputs_nhwc_body(const float *image, long height, long width, long channels, int upsampled,
                                                long tile_first, long tile_count, const float *zero, long stride, float *v) {
    long tiles_x = ((upsampled ? 2 : 1) * width + 1) / 2;
    for (long k = 0; k < tile_count; k++) {
        long t = tile_first + k;
        const float *p[4][4];
        tile_pixels_nhwc(image, height, width, channels, upsampled, t / tiles_x, t % tiles_x, zero, p);
        float *out = v + k * channels;
        _Pragma("clang loop vectorize(assume_safety)") for (long c = 0; c < channels; c++) {
            float t0[4], t1[4], t2[4], t3[4];  // B^T d, column j
            SDF_UNROLL for (int j = 0; j < 4; j++) {
                float d0 = p[0][j][c], d1 = p[1][j][c], d2 = p[2][j][c], d3 = p[3][j][c];
                t0[j] = d0 - d2;
                t1[j] = d1 + d2;
                t2[j] = d2 - d1;
                t3[j] = d1 - d3;
            }
            float *rows[4] = {t0, t1, t2, t3};
            SDF_UNROLL for (int i = 0; i < 4; i++) {
                const float *r = rows[i];
                out[(i * 4 + 0) * stride + c] = r[0] - r[2];
                out[(i * 4 + 1) * stride + c] = r[1] + r[2];
                out[(i * 4 + 2) * stride + c] = r[2] - r[1];
                out[(i * 4 + 3) * stride + c] = r[1] - r[3];
            }
        }
    }
}
SDF_MULTIVERSION(sdf_winograd23_inputs_nhwc,
                 (const float *image, long height, long width, long channels, int upsampled, long tile_first, long tile_count,
                  const float *zero, long stride, float *v),
                 (image, height, width, channels, upsampled, tile_first, tile_count, zero, stride, v))

// Y = A^T M A + bias (then + residual, then ReLU) for output channels [0, outputs) of one tile:
// its products are src[e * stride + o]; output pixel (i, j) goes to y[i][j] (a row of `outputs`),
// its residual is r[i][j]. The same operations in the same order as output23 and finish_range.
#define OUTPUT23_NHWC_LOOP(residual, relu)                                                                   \
    _Pragma("clang loop vectorize(assume_safety)") for (long o = 0; o < outputs; o++) {                      \
        float x[16];                                                                                         \
        SDF_UNROLL for (int e = 0; e < 16; e++) x[e] = src[e * stride + o];                                  \
        float b = bias ? bias[o] : 0.0f, t[2][4];                                                            \
        SDF_UNROLL for (int j = 0; j < 4; j++) {                                                             \
            t[0][j] = x[j] + x[4 + j] + x[8 + j];                                                            \
            t[1][j] = x[4 + j] - x[8 + j] - x[12 + j];                                                       \
        }                                                                                                    \
        float v00 = t[0][0] + t[0][1] + t[0][2] + b, v01 = t[0][1] - t[0][2] - t[0][3] + b;                  \
        float v10 = t[1][0] + t[1][1] + t[1][2] + b, v11 = t[1][1] - t[1][2] - t[1][3] + b;                  \
        if (residual) { v00 += r00[o]; v01 += r01[o]; v10 += r10[o]; v11 += r11[o]; }                        \
        if (relu) { v00 = v00 > 0 ? v00 : 0; v01 = v01 > 0 ? v01 : 0; v10 = v10 > 0 ? v10 : 0; v11 = v11 > 0 ? v11 : 0; } \
        y00[o] = v00; y01[o] = v01; y10[o] = v10; y11[o] = v11;                                              \
    }
SDF_INLINE void output23_nhwc(const float *restrict src, long stride, long outputs, const float *restrict bias, float *y[2][2],
                              const float *r[2][2], int relu) {
    float *restrict y00 = y[0][0], *restrict y01 = y[0][1], *restrict y10 = y[1][0], *restrict y11 = y[1][1];
    const float *restrict r00 = r[0][0], *restrict r01 = r[0][1], *restrict r10 = r[1][0], *restrict r11 = r[1][1];
    if (r00 && relu) OUTPUT23_NHWC_LOOP(1, 1)
    else if (r00) OUTPUT23_NHWC_LOOP(1, 0)
    else if (relu) OUTPUT23_NHWC_LOOP(0, 1)
    else OUTPUT23_NHWC_LOOP(0, 0)
}

// Where the outputs of tile t (2 rows of `tw` columns, ceil(width / tw) tiles per row) go: y[i][j]
// into `image`, or for outputs beyond it a row of `scratch` each (12 rows), and their residuals
// (res[i][j] NULL without one).
SDF_INLINE void tile_outputs_nhwc(long t, int tw, long height, long width, long outputs, const float *residual, float *scratch,
                                  float *image, float *y[2][3], const float *res[2][3]) {
    long tiles_x = (width + tw - 1) / tw, y0 = 2 * (t / tiles_x), x0 = tw * (t % tiles_x);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < tw; j++) {
            int inside = y0 + i < height && x0 + j < width;
            long offset = ((y0 + i) * width + x0 + j) * outputs;
            y[i][j] = inside ? image + offset : scratch + (i * 3 + j) * outputs;
            res[i][j] = residual ? (inside ? residual + offset : scratch + (6 + i * 3 + j) * outputs) : 0;
        }
}

SDF_INLINE void sdf_winograd23_outputs_nhwc_body(const float *m, long stride, long tile_first, long tile_count, long height,
                                                 long width, long outputs, const float *bias, const float *residual, int relu,
                                                 float *scratch, float *image) {
    for (long k = 0; k < tile_count; k++) {
        float *y[2][3];
        const float *res[2][3];
        tile_outputs_nhwc(tile_first + k, 2, height, width, outputs, residual, scratch, image, y, res);
        float *y22[2][2] = {{y[0][0], y[0][1]}, {y[1][0], y[1][1]}};
        const float *res22[2][2] = {{res[0][0], res[0][1]}, {res[1][0], res[1][1]}};
        output23_nhwc(m + k * outputs, stride, outputs, bias, y22, res22, relu);
    }
}
SDF_MULTIVERSION(sdf_winograd23_outputs_nhwc,
                 (const float *m, long stride, long tile_first, long tile_count, long height, long width, long outputs,
                  const float *bias, const float *residual, int relu, float *scratch, float *image),
                 (m, stride, tile_first, tile_count, height, width, outputs, bias, residual, relu, scratch, image))

// MARK: - F(2x3, 3x3) channels last

// Rectangular Winograd: F(2,3) down the columns (points 0, +-1, inf) and F(3,3) along the rows
// (points 0, 1, -1, 2, inf): 4x5 input tiles, 2x3 output tiles, 20 products per 6 outputs instead
// of F(2x2)'s 24 (16 per 4). The row transform's coefficients (2, 3, 4, 1/6) cost some accuracy:
// against a convolution in double precision its largest error is about a float32 im2col
// convolution's (4.0e-6 against 4.3e-6 of the largest output, F(2x2) 1.3e-6, on the data of
// OpParityTests.channelsLastAccuracy; on ReLU'd random normal inputs 7.5e-7 against F(2x2)'s 3e-7
// and a pairwise-summed float32 convolution's 1.8e-7).
// Layouts as for F(2x2) channels last, with e = 5 i + j (row i of 4, column j of 5).

// G for F(3,3) with points 0, 1, -1, 2, inf (5x3).
static const float G33[5][3] = {
    {0.5f, 0, 0}, {-0.5f, -0.5f, -0.5f}, {-1.0f / 6, 1.0f / 6, -1.0f / 6}, {1.0f / 6, 1.0f / 3, 2.0f / 3}, {0, 0, 1},
};

// Filters (O, C, 3, 3) -> u (positions, C, O), positions = rows x cols: u[i cols + j][c][o] =
// (Gr g Gc^T)[i][j] for F(2, 3) rows (`cols` 4: F(2,3) along the rows too, 5: F(3,3)).
SDF_INLINE void sdf_winograd_filters_nhwc_body(const float *weights, long outputs, long inputs, long cols, long o0, long o1, float *u) {
    const float(*gc)[3] = cols == 5 ? G33 : G23;
    for (long o = o0; o < o1; o++)
        for (long c = 0; c < inputs; c++) {
            const float *g = weights + (o * inputs + c) * 9;
            for (int i = 0; i < 4; i++) {
                float t[3];  // row i of G23 g
                for (int k = 0; k < 3; k++) t[k] = G23[i][0] * g[k] + G23[i][1] * g[3 + k] + G23[i][2] * g[6 + k];
                for (long j = 0; j < cols; j++)
                    u[((i * cols + j) * inputs + c) * outputs + o] = gc[j][0] * t[0] + gc[j][1] * t[1] + gc[j][2] * t[2];
            }
        }
}
SDF_MULTIVERSION(sdf_winograd_filters_nhwc, (const float *weights, long outputs, long inputs, long cols, long o0, long o1, float *u),
                 (weights, outputs, inputs, cols, o0, o1, u))

SDF_INLINE void sdf_winograd2x3_inputs_nhwc_body(const float *image, long height, long width, long channels, long tile_first,
                                                 long tile_count, const float *zero, long stride, float *v) {
    long tiles_x = (width + 2) / 3;
    for (long k = 0; k < tile_count; k++) {
        long t = tile_first + k, y0 = 2 * (t / tiles_x) - 1, x0 = 3 * (t % tiles_x) - 1;
        const float *p[4][5];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 5; j++) {
                long y = y0 + i, x = x0 + j;
                p[i][j] = y >= 0 && y < height && x >= 0 && x < width ? image + (y * width + x) * channels : zero;
            }
        float *out = v + k * channels;
        _Pragma("clang loop vectorize(assume_safety)") for (long c = 0; c < channels; c++) {
            float t[4][5];  // B^T d (F(2,3) down each column)
            SDF_UNROLL for (int j = 0; j < 5; j++) {
                float d0 = p[0][j][c], d1 = p[1][j][c], d2 = p[2][j][c], d3 = p[3][j][c];
                t[0][j] = d0 - d2;
                t[1][j] = d1 + d2;
                t[2][j] = d2 - d1;
                t[3][j] = d1 - d3;
            }
            SDF_UNROLL for (int i = 0; i < 4; i++) {  // times B (F(3,3) along each row)
                float x0 = t[i][0], x1 = t[i][1], x2 = t[i][2], x3 = t[i][3], x4 = t[i][4];
                out[(i * 5 + 0) * stride + c] = 2 * x0 - x1 - 2 * x2 + x3;
                out[(i * 5 + 1) * stride + c] = x3 - 2 * x1 - x2;
                out[(i * 5 + 2) * stride + c] = 2 * x1 - 3 * x2 + x3;
                out[(i * 5 + 3) * stride + c] = x3 - x1;
                out[(i * 5 + 4) * stride + c] = 2 * x1 - x2 - 2 * x3 + x4;
            }
        }
    }
}
SDF_MULTIVERSION(sdf_winograd2x3_inputs_nhwc,
                 (const float *image, long height, long width, long channels, long tile_first, long tile_count,
                  const float *zero, long stride, float *v),
                 (image, height, width, channels, tile_first, tile_count, zero, stride, v))

// Y = A^T M A + bias (then + residual, then ReLU) for one tile's 2x3 outputs, channels [0, outputs):
// output (i, j) goes to y[i][j], its residual is r[i][j].
// One row of outputs from row r of A^T M, s[j] = m0 + m1 + m2 (expressions of the column j).
#define OUTPUT2X3_ROW(m0, m1, m2, ya, yb, yc, ra, rb, rc, residual, relu)                                      \
    {                                                                                                        \
        float s[5];                                                                                          \
        SDF_UNROLL for (int j = 0; j < 5; j++) s[j] = m0 + m1 + m2;                                          \
        float va = s[0] + s[1] + s[2] + s[3] + b, vb = s[1] - s[2] + 2 * s[3] + b, vc = s[1] + s[2] + 4 * s[3] + s[4] + b; \
        if (residual) { va += ra[o]; vb += rb[o]; vc += rc[o]; }                                             \
        if (relu) { va = va > 0 ? va : 0; vb = vb > 0 ? vb : 0; vc = vc > 0 ? vc : 0; }                     \
        ya[o] = va; yb[o] = vb; yc[o] = vc;                                                                  \
    }
#define OUTPUT2X3_NHWC_LOOP(residual, relu)                                                                  \
    _Pragma("clang loop vectorize(assume_safety)") for (long o = 0; o < outputs; o++) {                      \
        float b = bias ? bias[o] : 0.0f;                                                                     \
        /* rows 0 and 1 of A^T M: M0 + M1 + M2 and M1 - M2 - M3, column j */                                 \
        OUTPUT2X3_ROW(src[j * stride + o], src[(5 + j) * stride + o], src[(10 + j) * stride + o],            \
                      y00, y01, y02, r00, r01, r02, residual, relu)                                          \
        OUTPUT2X3_ROW(src[(5 + j) * stride + o], -src[(10 + j) * stride + o], -src[(15 + j) * stride + o],    \
                      y10, y11, y12, r10, r11, r12, residual, relu)                                          \
    }
SDF_INLINE void output2x3_nhwc(const float *restrict src, long stride, long outputs, const float *restrict bias, float *y[2][3],
                               const float *r[2][3], int relu) {
    float *restrict y00 = y[0][0], *restrict y01 = y[0][1], *restrict y02 = y[0][2];
    float *restrict y10 = y[1][0], *restrict y11 = y[1][1], *restrict y12 = y[1][2];
    const float *restrict r00 = r[0][0], *restrict r01 = r[0][1], *restrict r02 = r[0][2];
    const float *restrict r10 = r[1][0], *restrict r11 = r[1][1], *restrict r12 = r[1][2];
    if (r00 && relu) OUTPUT2X3_NHWC_LOOP(1, 1)
    else if (r00) OUTPUT2X3_NHWC_LOOP(1, 0)
    else if (relu) OUTPUT2X3_NHWC_LOOP(0, 1)
    else OUTPUT2X3_NHWC_LOOP(0, 0)
}

SDF_INLINE void sdf_winograd2x3_outputs_nhwc_body(const float *m, long stride, long tile_first, long tile_count, long height,
                                                  long width, long outputs, const float *bias, const float *residual, int relu,
                                                  float *scratch, float *image) {
    for (long k = 0; k < tile_count; k++) {
        float *y[2][3];
        const float *res[2][3];
        tile_outputs_nhwc(tile_first + k, 3, height, width, outputs, residual, scratch, image, y, res);
        output2x3_nhwc(m + k * outputs, stride, outputs, bias, y, res, relu);
    }
}
SDF_MULTIVERSION(sdf_winograd2x3_outputs_nhwc,
                 (const float *m, long stride, long tile_first, long tile_count, long height, long width, long outputs,
                  const float *bias, const float *residual, int relu, float *scratch, float *image),
                 (m, stride, tile_first, tile_count, height, width, outputs, bias, residual, relu, scratch, image))
