// Winograd minimal filtering for 3x3 convolutions, stride 1 (Lavin & Gray 2016).
//
// F(2x2, 3x3): 4x4 input tiles, 2x2 output tiles, 16 multiplies per output pair instead of 36.
// F(4x4, 3x3): 6x6 input tiles, 4x4 output tiles, 36 multiplies per 16 outputs instead of 144.
// The transforms are done here; the 16 (or 36) element-wise products summed over channels are
// GEMMs done by the caller with BLAS. Layouts: U[e][o][c] (transformed filters),
// V[e][c][t] (transformed input tiles), M[e][o][t] (products), e = position within the tile.
#include "CKernels.h"

#include <string.h>

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

// MARK: - F(2x2, 3x3)

// G (4x3) = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]]; U = G g G^T.
static void filter23(const float *g, float *u) {
    float t[4][3];
    for (int j = 0; j < 3; j++) {
        float g0 = g[0 * 3 + j], g1 = g[1 * 3 + j], g2 = g[2 * 3 + j];
        t[0][j] = g0;
        t[1][j] = 0.5f * (g0 + g1 + g2);
        t[2][j] = 0.5f * (g0 - g1 + g2);
        t[3][j] = g2;
    }
    for (int i = 0; i < 4; i++) {
        float a = t[i][0], b = t[i][1], c = t[i][2];
        u[i * 4 + 0] = a;
        u[i * 4 + 1] = 0.5f * (a + b + c);
        u[i * 4 + 2] = 0.5f * (a - b + c);
        u[i * 4 + 3] = c;
    }
}

void sdf_winograd23_filters(const float *weights, long outputs, long inputs, long o0, long o1, float *u) {
    for (long o = o0; o < o1; o++) {
        for (long c = 0; c < inputs; c++) {
            float t[16];
            filter23(weights + (o * inputs + c) * 9, t);
            for (int e = 0; e < 16; e++) u[(e * outputs + o) * inputs + c] = t[e];
        }
    }
}

// B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]; V = B^T d B.
void sdf_winograd23_inputs(const float *image, long height, long width, long tiles_x, long tile_first, long tile_count,
                           long c0, long c1, long channels_stride, float *v) {
    for (long c = c0; c < c1; c++) {
        const float *plane = image + c * height * width;
        for (long k = 0; k < tile_count; k++) {
            long tile = tile_first + k;
            long ty = tile / tiles_x, tx = tile % tiles_x;
            float d[4][4];
            load_tile(plane, height, width, 2 * ty - 1, 2 * tx - 1, 4, &d[0][0]);  // padding 1
            float t[4][4];
            for (int j = 0; j < 4; j++) {
                t[0][j] = d[0][j] - d[2][j];
                t[1][j] = d[1][j] + d[2][j];
                t[2][j] = d[2][j] - d[1][j];
                t[3][j] = d[1][j] - d[3][j];
            }
            float *out = v + c * tile_count + k;
            long stride = channels_stride * tile_count;  // between positions e
            for (int i = 0; i < 4; i++) {
                out[(i * 4 + 0) * stride] = t[i][0] - t[i][2];
                out[(i * 4 + 1) * stride] = t[i][1] + t[i][2];
                out[(i * 4 + 2) * stride] = t[i][2] - t[i][1];
                out[(i * 4 + 3) * stride] = t[i][1] - t[i][3];
            }
        }
    }
}

// A^T = [[1,1,1,0],[0,1,-1,-1]]; Y = A^T M A, plus bias.
void sdf_winograd23_outputs(const float *m, long outputs, long tile_count, long tile_first, long tiles_x,
                            long height, long width, const float *bias, long o0, long o1, float *image) {
    long stride = outputs * tile_count;
    for (long o = o0; o < o1; o++) {
        float b = bias ? bias[o] : 0.0f;
        float *plane = image + o * height * width;
        for (long k = 0; k < tile_count; k++) {
            const float *src = m + o * tile_count + k;
            float x[4][4];
            for (int e = 0; e < 16; e++) x[e / 4][e % 4] = src[e * stride];
            float t[2][4];
            for (int j = 0; j < 4; j++) {
                t[0][j] = x[0][j] + x[1][j] + x[2][j];
                t[1][j] = x[1][j] - x[2][j] - x[3][j];
            }
            long tile = tile_first + k, y = 2 * (tile / tiles_x), xx = 2 * (tile % tiles_x);
            for (int i = 0; i < 2; i++) {
                if (y + i >= height) continue;
                float r0 = t[i][0] + t[i][1] + t[i][2], r1 = t[i][1] - t[i][2] - t[i][3];
                plane[(y + i) * width + xx] = r0 + b;
                if (xx + 1 < width) plane[(y + i) * width + xx + 1] = r1 + b;
            }
        }
    }
}

// MARK: - F(4x4, 3x3)

// G (6x3) for points 0, +-1, +-2, inf (Lavin & Gray):
// [[1/4,0,0],[-1/6,-1/6,-1/6],[-1/6,1/6,-1/6],[1/24,1/12,1/6],[1/24,-1/12,1/6],[0,0,1]].
static const float G43[6][3] = {
    {1.0f / 4, 0, 0}, {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1},
};

void sdf_winograd43_filters(const float *weights, long outputs, long inputs, long o0, long o1, float *u) {
    for (long o = o0; o < o1; o++) {
        for (long c = 0; c < inputs; c++) {
            const float *g = weights + (o * inputs + c) * 9;
            float t[6][3];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++) t[i][j] = G43[i][0] * g[0 * 3 + j] + G43[i][1] * g[1 * 3 + j] + G43[i][2] * g[2 * 3 + j];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    float s = G43[j][0] * t[i][0] + G43[j][1] * t[i][1] + G43[j][2] * t[i][2];
                    u[((i * 6 + j) * outputs + o) * inputs + c] = s;
                }
        }
    }
}

// B^T (6x6) = [[4,0,-5,0,1,0],[0,-4,-4,1,1,0],[0,4,-4,-1,1,0],[0,-2,-1,2,1,0],[0,2,-1,-2,1,0],[0,4,0,-5,0,1]].
static inline void bt43(const float *d, long step, float *r) {
    float d0 = d[0], d1 = d[step], d2 = d[2 * step], d3 = d[3 * step], d4 = d[4 * step], d5 = d[5 * step];
    r[0] = 4 * d0 - 5 * d2 + d4;
    r[1] = -4 * d1 - 4 * d2 + d3 + d4;
    r[2] = 4 * d1 - 4 * d2 - d3 + d4;
    r[3] = -2 * d1 - d2 + 2 * d3 + d4;
    r[4] = 2 * d1 - d2 - 2 * d3 + d4;
    r[5] = 4 * d1 - 5 * d3 + d5;
}

void sdf_winograd43_inputs(const float *image, long height, long width, long tiles_x, long tile_first, long tile_count,
                           long c0, long c1, long channels_stride, float *v) {
    for (long c = c0; c < c1; c++) {
        const float *plane = image + c * height * width;
        for (long k = 0; k < tile_count; k++) {
            long tile = tile_first + k;
            long ty = tile / tiles_x, tx = tile % tiles_x;
            float d[6][6];
            load_tile(plane, height, width, 4 * ty - 1, 4 * tx - 1, 6, &d[0][0]);
            float t[6][6], r[6];
            for (int j = 0; j < 6; j++) {
                bt43(&d[0][j], 6, r);
                for (int i = 0; i < 6; i++) t[i][j] = r[i];
            }
            float *out = v + c * tile_count + k;
            long stride = channels_stride * tile_count;
            for (int i = 0; i < 6; i++) {
                bt43(&t[i][0], 1, r);
                for (int j = 0; j < 6; j++) out[(i * 6 + j) * stride] = r[j];
            }
        }
    }
}

// A^T (4x6) = [[1,1,1,1,1,0],[0,1,-1,2,-2,0],[0,1,1,4,4,0],[0,1,-1,8,-8,1]].
static inline void at43(const float *x, long step, float *r) {
    float x0 = x[0], x1 = x[step], x2 = x[2 * step], x3 = x[3 * step], x4 = x[4 * step], x5 = x[5 * step];
    r[0] = x0 + x1 + x2 + x3 + x4;
    r[1] = x1 - x2 + 2 * x3 - 2 * x4;
    r[2] = x1 + x2 + 4 * x3 + 4 * x4;
    r[3] = x1 - x2 + 8 * x3 - 8 * x4 + x5;
}

void sdf_winograd43_outputs(const float *m, long outputs, long tile_count, long tile_first, long tiles_x,
                            long height, long width, const float *bias, long o0, long o1, float *image) {
    long stride = outputs * tile_count;
    for (long o = o0; o < o1; o++) {
        float b = bias ? bias[o] : 0.0f;
        float *plane = image + o * height * width;
        for (long k = 0; k < tile_count; k++) {
            const float *src = m + o * tile_count + k;
            float x[6][6];
            for (int e = 0; e < 36; e++) x[e / 6][e % 6] = src[e * stride];
            float t[4][6], r[4];
            for (int j = 0; j < 6; j++) {
                at43(&x[0][j], 6, r);
                for (int i = 0; i < 4; i++) t[i][j] = r[i];
            }
            long tile = tile_first + k, y = 4 * (tile / tiles_x), xx = 4 * (tile % tiles_x);
            for (int i = 0; i < 4; i++) {
                if (y + i >= height) continue;
                at43(&t[i][0], 1, r);
                for (int j = 0; j < 4; j++)
                    if (xx + j < width) plane[(y + i) * width + xx + j] = r[j] + b;
            }
        }
    }
}
