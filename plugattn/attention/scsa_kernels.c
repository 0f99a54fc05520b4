/* SCSA's passes over the feature map, fused, for float32 maps laid out (B·C planes of H × W).
 *
 * Compiled on first use by plugattn/_native.py and called through ctypes by
 * plugattn/attention/scsa_fast.py, which states the equations and holds these functions to the
 * pure-torch path in the tests. x_s = x · a_h ⊗ a_w (SMSA's output) is never written: every pass
 * recomputes it from x and the two gates. Work is split over the B·C planes with OpenMP.
 *
 * Per plane: ah (H), aw (W) the spatial gates; ac the channel gate (one number); the PCSA pooling
 * window kh × kw with stride kh × kw, floor mode: ho = H / kh, wo = W / kw windows.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "vexp.h"
#include "pcsa_row.h" /* attention_row, for the inference kernel at the end */

/* SMSA's pooling, Eq. (1), of one plane p (H × W): rh[h] = mean_w p[h, w], cw[w] = mean_h p[h, w]. */
static void means_plane(const float *p, int64_t h, int64_t w, float *rh, float *cw) {
    memset(cw, 0, (size_t)w * sizeof(float));
    for (int64_t y = 0; y < h; ++y) {
        const float *row = p + y * w;
        float s = 0.f;
#pragma omp simd reduction(+ : s)
        for (int64_t x0 = 0; x0 < w; ++x0) {
            s += row[x0];
            cw[x0] += row[x0];
        }
        rh[y] = s / (float)w;
    }
    for (int64_t x0 = 0; x0 < w; ++x0) cw[x0] /= (float)h;
}

void scsa_means(const float *x, int64_t planes, int64_t h, int64_t w, float *xh, float *xw, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) means_plane(x + i * h * w, h, w, xh + i * h, xw + i * w);
}

/* The pooling's gradient spread over one window row i: re[x] = gy[i, x / kw] / (kh·kw) for the covered
 * columns, 0 for the rest; rra[x] = re[x] · aw[x]. */
static void spread(const float *gy_row, const float *aw, int64_t w, int64_t wo, int64_t kw, float inv,
                   float *re, float *rra) {
    for (int64_t j = 0; j < wo; ++j)
        for (int64_t q = j * kw; q < (j + 1) * kw; ++q) re[q] = gy_row[j] * inv;
    for (int64_t x0 = wo * kw; x0 < w; ++x0) re[x0] = 0.f;
    for (int64_t x0 = 0; x0 < w; ++x0) rra[x0] = re[x0] * aw[x0];
}

/* PCSA's average pooling of x_s, Eq. (5): y[i, j] = mean over window (i, j) of x · ah ⊗ aw. The kh rows
 * of a window row are summed first (weighted by ah, as vectors), then each window's kw columns. */
static void window_pool_plane(const float *p, const float *gh, const float *gw, int64_t h, int64_t w, int64_t kh,
                              int64_t kw, float *out) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
    float acc[w];
    for (int64_t r = 0; r < ho; ++r) {
        memset(acc, 0, (size_t)w * sizeof(float));
        for (int64_t y = r * kh; y < (r + 1) * kh; ++y) {
            const float *restrict row = p + y * w, t = gh[y];
#pragma omp simd
            for (int64_t x0 = 0; x0 < w; ++x0) acc[x0] += row[x0] * t;
        }
        for (int64_t j = 0; j < wo; ++j) {
            float sum = 0.f;
            for (int64_t q = j * kw; q < (j + 1) * kw; ++q) sum += acc[q] * gw[q];
            out[r * wo + j] = sum * inv;
        }
    }
}

void scsa_window_pool(const float *x, const float *ah, const float *aw, int64_t planes, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, float *out, int threads) {
    const int64_t n = (h / kh) * (w / kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i)
        window_pool_plane(x + i * h * w, ah + i * h, aw + i * w, h, w, kh, kw, out + i * n);
}

/* The output, Eq. (10): out[h, w] = x · ah[h] · aw[w] · ac. */
static void output_plane(const float *p, const float *gh, const float *restrict gw, float ac, int64_t h, int64_t w,
                         float *o) {
    for (int64_t y = 0; y < h; ++y) {
        const float t = gh[y] * ac;
        const float *restrict row = p + y * w;
        float *restrict orow = o + y * w;
#pragma omp simd
        for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] = row[x0] * t * gw[x0];
    }
}

void scsa_output(const float *x, const float *ah, const float *aw, const float *ac, int64_t planes, int64_t h,
                 int64_t w, float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i)
        output_plane(x + i * h * w, ah + i * h, aw + i * w, ac[i], h, w, out + i * h * w);
}

/* Backward of the output's reductions, with e = g · x:
 *   gac = sum e · ah ⊗ aw,  gah[h] = ac · sum_w e aw,  gaw[w] = ac · sum_h e ah. */
void scsa_output_backward(const float *g, const float *x, const float *ah, const float *aw, const float *ac,
                          int64_t planes, int64_t h, int64_t w, float *gah, float *gaw, float *gac, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *gp = g + i * h * w, *p = x + i * h * w, *gh = ah + i * h, *gw = aw + i * w;
        float *oh = gah + i * h, *ow = gaw + i * w;
        memset(ow, 0, (size_t)w * sizeof(float));
        float total = 0.f;
        for (int64_t y = 0; y < h; ++y) {
            const float t = gh[y];
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const float e = gp[y * w + x0] * p[y * w + x0];
                s += e * gw[x0];
                ow[x0] += e * t;
            }
            oh[y] = s * ac[i];
            total += s * t;
        }
        for (int64_t x0 = 0; x0 < w; ++x0) ow[x0] *= ac[i];
        gac[i] = total;
    }
}

/* Backward of the window pooling into the gates, with r[h, w] = gy[h / kh, w / kw] / (kh·kw) inside the
 * windows (0 in the rows and columns no window covers):
 *   gah[h] = sum_w x r aw,  gaw[w] = sum_h x r ah   (overwritten). */
void scsa_window_pool_backward(const float *x, const float *ah, const float *aw, const float *gy, int64_t planes,
                               int64_t h, int64_t w, int64_t kh, int64_t kw, float *gah, float *gaw,
                               int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *p = x + i * h * w, *gh = ah + i * h, *gw = aw + i * w;
        float *oh = gah + i * h, *restrict ow = gaw + i * w;
        float re[w], rra[w];
        memset(oh, 0, (size_t)h * sizeof(float));
        memset(ow, 0, (size_t)w * sizeof(float));
        for (int64_t y = 0; y < ho * kh; ++y) {
            if (y % kh == 0) spread(gy + (i * ho + y / kh) * wo, gw, w, wo, kw, inv, re, rra);
            const float *restrict row = p + y * w, t = gh[y];
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t x0 = 0; x0 < w; ++x0) {
                s += row[x0] * rra[x0];
                ow[x0] += row[x0] * re[x0] * t;
            }
            oh[y] = s;
        }
    }
}

/* The whole input gradient in one pass:
 *   gx[h, w] = g · ah aw ac            (output; if g)
 *            + r[h, w] · ah aw          (window pooling; if gy)
 *            + gxh[h] / W + gxw[w] / H  (SMSA's means; if gxh)
 * with r as in scsa_window_pool_backward. */
void scsa_input_backward(const float *g, const float *ah, const float *aw, const float *ac, const float *gy,
                         const float *gxh, const float *gxw, int64_t planes, int64_t h, int64_t w, int64_t kh,
                         int64_t kw, float *gx, int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw), rw = 1.f / (float)w, rh = 1.f / (float)h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *restrict gw = aw + i * w;
        float *restrict o = gx + i * h * w;
        float col[w], re[w], rra[w]; /* col: the means' column term gxw[w] / H, the same in every row */
        for (int64_t x0 = 0; x0 < w; ++x0) col[x0] = gxh ? gxw[i * w + x0] * rh : 0.f;
        for (int64_t y = 0; y < h; ++y) {
            const float t = ah[i * h + y], base = gxh ? gxh[i * h + y] * rw : 0.f;
            float *restrict orow = o + y * w;
            if (g) {
                const float *restrict grow = g + i * h * w + y * w, tc = t * ac[i];
#pragma omp simd
                for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] = grow[x0] * tc * gw[x0] + (base + col[x0]);
            } else {
#pragma omp simd
                for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] = base + col[x0];
            }
            if (gy && y < ho * kh) {
                if (y % kh == 0) spread(gy + (i * ho + y / kh) * wo, gw, w, wo, kw, inv, re, rra);
#pragma omp simd
                for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] += t * rra[x0];
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------
 * The same passes for channels-last maps: x[n, y, x0, k] at ((n·H + y)·W + x0)·C + k. The gates come
 * transposed so that every inner loop runs over the channels, contiguous in memory: aht (B, H, C),
 * awt (B, W, C), ac (B, C); the gradients of the gates are written in the same transposed shapes, and the
 * pooled map y and its gradient gy are channels-last too: (B, ho, wo, C). Work is split over the batch.
 * ------------------------------------------------------------------------------------------------------ */

/* Eq. (1): xht[n, y, :] = mean_x0 x[n, y, x0, :], xwt[n, x0, :] = mean_y x[n, y, x0, :]. */
static void means_cl_sample(const float *x, int64_t c, int64_t h, int64_t w, float *xht, float *restrict cw) {
    const float rw = 1.f / (float)w, rh = 1.f / (float)h;
    memset(cw, 0, (size_t)(w * c) * sizeof(float));
    for (int64_t y = 0; y < h; ++y) {
        float *restrict r = xht + y * c;
        memset(r, 0, (size_t)c * sizeof(float));
        for (int64_t x0 = 0; x0 < w; ++x0) {
            const float *restrict p = x + (y * w + x0) * c;
            float *restrict q = cw + x0 * c;
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) {
                r[k] += p[k];
                q[k] += p[k];
            }
        }
#pragma omp simd
        for (int64_t k = 0; k < c; ++k) r[k] *= rw;
    }
#pragma omp simd
    for (int64_t k = 0; k < w * c; ++k) cw[k] *= rh;
}

void scsa_means_cl(const float *x, int64_t b, int64_t c, int64_t h, int64_t w, float *xht, float *xwt,
                   int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) means_cl_sample(x + n * h * w * c, c, h, w, xht + n * h * c, xwt + n * w * c);
}

/* Eq. (5): out[n, i, j, :] = mean over window (i, j) of x · ah ⊗ aw. */
static void window_pool_cl_sample(const float *x, const float *aht, const float *awt, int64_t c, int64_t h,
                                  int64_t w, int64_t kh, int64_t kw, float *out) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
    float row[c];
    for (int64_t i = 0; i < ho; ++i)
        for (int64_t j = 0; j < wo; ++j) {
            float *restrict o = out + (i * wo + j) * c;
            memset(o, 0, (size_t)c * sizeof(float));
            for (int64_t y = i * kh; y < (i + 1) * kh; ++y) {
                memset(row, 0, (size_t)c * sizeof(float));
                for (int64_t x0 = j * kw; x0 < (j + 1) * kw; ++x0) {
                    const float *restrict p = x + (y * w + x0) * c, *restrict gw = awt + x0 * c;
#pragma omp simd
                    for (int64_t k = 0; k < c; ++k) row[k] += p[k] * gw[k];
                }
                const float *restrict gh = aht + y * c;
#pragma omp simd
                for (int64_t k = 0; k < c; ++k) o[k] += row[k] * gh[k];
            }
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) o[k] *= inv;
        }
}

void scsa_window_pool_cl(const float *x, const float *aht, const float *awt, int64_t b, int64_t c, int64_t h,
                         int64_t w, int64_t kh, int64_t kw, float *out, int threads) {
    const int64_t n_out = (h / kh) * (w / kw) * c;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n)
        window_pool_cl_sample(x + n * h * w * c, aht + n * h * c, awt + n * w * c, c, h, w, kh, kw, out + n * n_out);
}

/* Eq. (10): out = x · ah · aw · ac. */
static void output_cl_sample(const float *x, const float *aht, const float *awt, const float *restrict gc,
                             int64_t c, int64_t h, int64_t w, float *out) {
    float t[c];
    for (int64_t y = 0; y < h; ++y) {
        const float *restrict gh = aht + y * c;
#pragma omp simd
        for (int64_t k = 0; k < c; ++k) t[k] = gh[k] * gc[k];
        for (int64_t x0 = 0; x0 < w; ++x0) {
            const int64_t at = (y * w + x0) * c;
            const float *restrict p = x + at, *restrict gw = awt + x0 * c;
            float *restrict o = out + at;
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) o[k] = p[k] * t[k] * gw[k];
        }
    }
}

void scsa_output_cl(const float *x, const float *aht, const float *awt, const float *ac, int64_t b, int64_t c,
                    int64_t h, int64_t w, float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n)
        output_cl_sample(x + n * h * w * c, aht + n * h * c, awt + n * w * c, ac + n * c, c, h, w, out + n * h * w * c);
}

/* Backward of the output's reductions (e = g · x): gac = sum e ah aw, gah = ac sum_x0 e aw,
 * gaw = ac sum_y e ah. */
void scsa_output_backward_cl(const float *g, const float *x, const float *aht, const float *awt, const float *ac,
                             int64_t b, int64_t c, int64_t h, int64_t w, float *gaht, float *gawt, float *gac,
                             int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float s[c];
        float *restrict ow = gawt + n * w * c, *restrict total = gac + n * c;
        const float *restrict gc = ac + n * c;
        memset(ow, 0, (size_t)(w * c) * sizeof(float));
        memset(total, 0, (size_t)c * sizeof(float));
        for (int64_t y = 0; y < h; ++y) {
            const float *restrict gh = aht + (n * h + y) * c;
            memset(s, 0, (size_t)c * sizeof(float));
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const int64_t at = ((n * h + y) * w + x0) * c;
                const float *restrict gp = g + at, *restrict p = x + at, *restrict gw = awt + (n * w + x0) * c;
                float *restrict q = ow + x0 * c;
#pragma omp simd
                for (int64_t k = 0; k < c; ++k) {
                    const float e = gp[k] * p[k];
                    s[k] += e * gw[k];
                    q[k] += e * gh[k];
                }
            }
            float *restrict oh = gaht + (n * h + y) * c;
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) {
                oh[k] = s[k] * gc[k];
                total[k] += s[k] * gh[k];
            }
        }
#pragma omp simd
        for (int64_t q = 0; q < w * c; ++q) ow[q] *= gc[q % c];
    }
}

/* Backward of the window pooling into the gates, r = gy[y / kh, x0 / kw] / (kh·kw) inside the windows:
 * gah = sum_x0 x r aw, gaw = sum_y x r ah (overwritten). */
void scsa_window_pool_backward_cl(const float *x, const float *aht, const float *awt, const float *gy, int64_t b,
                                  int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, float *gaht, float *gawt,
                                  int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float *restrict ow = gawt + n * w * c;
        memset(gaht + n * h * c, 0, (size_t)(h * c) * sizeof(float));
        memset(ow, 0, (size_t)(w * c) * sizeof(float));
        for (int64_t y = 0; y < ho * kh; ++y) {
            const float *restrict gh = aht + (n * h + y) * c;
            float *restrict oh = gaht + (n * h + y) * c;
            for (int64_t x0 = 0; x0 < wo * kw; ++x0) {
                const float *restrict p = x + ((n * h + y) * w + x0) * c, *restrict gw = awt + (n * w + x0) * c;
                const float *restrict r = gy + ((n * ho + y / kh) * wo + x0 / kw) * c;
                float *restrict q = ow + x0 * c;
#pragma omp simd
                for (int64_t k = 0; k < c; ++k) {
                    const float v = p[k] * r[k] * inv;
                    oh[k] += v * gw[k];
                    q[k] += v * gh[k];
                }
            }
        }
    }
}

/* The whole input gradient in one pass, as scsa_input_backward: g · ah aw ac (if g) + r · ah aw (if gy)
 * + gxh / W + gxw / H (if gxh; gxht, gxwt transposed like the gates). */
void scsa_input_backward_cl(const float *g, const float *aht, const float *awt, const float *ac, const float *gy,
                            const float *gxht, const float *gxwt, int64_t b, int64_t c, int64_t h, int64_t w,
                            int64_t kh, int64_t kw, float *gx, int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw), rw = 1.f / (float)w, rh = 1.f / (float)h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float t[c], base[c];
        const float *restrict gc = ac + n * c;
        for (int64_t y = 0; y < h; ++y) {
            const float *restrict gh = aht + (n * h + y) * c;
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) {
                t[k] = gh[k] * gc[k];
                base[k] = gxht ? gxht[(n * h + y) * c + k] * rw : 0.f;
            }
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const int64_t at = ((n * h + y) * w + x0) * c;
                const float *restrict gw = awt + (n * w + x0) * c;
                float *restrict o = gx + at;
                if (gxht) {
                    const float *restrict col = gxwt + (n * w + x0) * c;
#pragma omp simd
                    for (int64_t k = 0; k < c; ++k) o[k] = base[k] + col[k] * rh;
                } else {
                    memset(o, 0, (size_t)c * sizeof(float));
                }
                if (g) {
                    const float *restrict gp = g + at;
#pragma omp simd
                    for (int64_t k = 0; k < c; ++k) o[k] += gp[k] * t[k] * gw[k];
                }
                if (gy && y < ho * kh && x0 < wo * kw) {
                    const float *restrict r = gy + ((n * ho + y / kh) * wo + x0 / kw) * c;
#pragma omp simd
                    for (int64_t k = 0; k < c; ++k) o[k] += r[k] * inv * gh[k] * gw[k];
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------
 * SMSA's depthwise 1-D convolution, Eq. (2), on the sequences s (B, C, L), contiguous, with zero padding
 * p = (k - 1) / 2 on both sides and per-channel kernels wt (C, k) and biases bias (C):
 *   out[n, j, i] = bias[j] + sum_t wt[j, t] · s[n, j, i + t - p]
 * (torch's depthwise kernels are tuned for images: on these short sequences their backward took 3-6 ms a
 * call on the CPUs measured, about as long as all of SCSA's passes over the map of one block).
 * ------------------------------------------------------------------------------------------------------ */
/* o[q] += sum_t kern[t] · row[q + dir·(t - p)] over the q where the index falls inside the row: dir = 1 is
 * the convolution, dir = -1 its input gradient (the kernel mirrored). */
static void shifted_sum(const float *restrict row, const float *restrict kern, int64_t l, int64_t k, int64_t dir,
                        float *restrict o) {
    const int64_t p = (k - 1) / 2;
    for (int64_t t = 0; t < k; ++t) {
        const int64_t shift = dir * (t - p), lo = shift < 0 ? -shift : 0, hi = shift > 0 ? l - shift : l;
        const float v = kern[t];
#pragma omp simd
        for (int64_t q = lo; q < hi; ++q) o[q] += v * row[q + shift];
    }
}

void scsa_dwconv(const float *s, const float *wt, const float *bias, int64_t b, int64_t c, int64_t l, int64_t k,
                 float *out, int threads) {
    const int64_t p = (k - 1) / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < b * c; ++i) {
        const int64_t j = i % c;
        const float *restrict row = s + i * l, *restrict kern = wt + j * k;
        float *restrict o = out + i * l;
        for (int64_t q = 0; q < l; ++q) o[q] = bias ? bias[j] : 0.f;
        shifted_sum(row, kern, l, k, 1, o);
    }
}

/* Its backward: gs[n, j, i] = sum_t wt[j, t] · g[n, j, i - t + p]; gwt[j, t] = sum_n,i g[n, j, i] ·
 * s[n, j, i + t - p]; gbias[j] = sum_n,i g[n, j, i] (gbias may be NULL). */
void scsa_dwconv_backward(const float *g, const float *s, const float *wt, int64_t b, int64_t c, int64_t l,
                          int64_t k, float *gs, float *gwt, float *gbias, int threads) {
    const int64_t p = (k - 1) / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < b * c; ++i) {
        const int64_t j = i % c;
        const float *restrict grow = g + i * l, *restrict kern = wt + j * k;
        float *restrict o = gs + i * l;
        memset(o, 0, (size_t)l * sizeof(float));
        shifted_sum(grow, kern, l, k, -1, o);
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t j = 0; j < c; ++j) {
        float acc[k];
        memset(acc, 0, (size_t)k * sizeof(float));
        float total = 0.f;
        for (int64_t n = 0; n < b; ++n) {
            const float *restrict grow = g + (n * c + j) * l, *restrict row = s + (n * c + j) * l;
            for (int64_t t = 0; t < k; ++t) {
                const int64_t shift = t - p, lo = shift < 0 ? -shift : 0, hi = shift > 0 ? l - shift : l;
                float sum = 0.f;
#pragma omp simd reduction(+ : sum)
                for (int64_t q = lo; q < hi; ++q) sum += grow[q] * row[q + shift];
                acc[t] += sum;
            }
            float sum = 0.f;
#pragma omp simd reduction(+ : sum)
            for (int64_t q = 0; q < l; ++q) sum += grow[q];
            total += sum;
        }
        for (int64_t t = 0; t < k; ++t) gwt[j * k + t] = acc[t];
        if (gbias) gbias[j] = total;
    }
}

/* ------------------------------------------------------------------------------------------------------
 * The whole module in inference, one sample at a time (scsa_eval): scsa.py's steps (1)-(10) back to back
 * while the sample's map is in cache, so the map is read from memory once and written once. The small
 * steps run on (positions, C) arrays, every inner loop over the channels. Per sample, with
 * N = (H / kh)·(W / kw) pooled positions and D = C / heads:
 *   (1)   mh (H, C), mw (W, C) the means;
 *   (2-3) ah = σ(GN_4(dwconv(mh) + bias)) and likewise aw, each direction zero-padded on its own; the norm
 *         over 4 groups of C/4 channels × the positions, biased variance, then its per-channel affine;
 *   (5)   y (N, C) the window means of x · ah ⊗ aw;
 *   (6-7) y ← GN_1(y) over all N·C values; q = y·wq + bq, k = y·wk + bk, v̄ = mean_N(y·wv + bv);
 *   (8-9) o = softmax(q kᵀ · scale) · v̄ per head (attention_row), ac = σ(o);
 *   (10)  out = x · ah ⊗ aw · ac.
 * par: the module's numbers: the SMSA kernel transposed (k, C), then C floats each: its bias, GN_h's weight
 * and bias, GN_w's, GN_1's, wq, bq, wk, bk, wv, bv (zeros for absent biases); eps: GN_h's, GN_w's and
 * GN_1's epsilon. A sample whose means are not all finite (a value that is not finite, or sums that
 * overflow) is not computed and flags[b] = 1: the caller computes those samples pass by pass.
 * `cl`: x and out channels-last. scratch: scsa_eval_scratch(c, h, w, kh, kw) floats per thread.
 * ------------------------------------------------------------------------------------------------------ */

int64_t scsa_eval_scratch(int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw) {
    const int64_t n = (h / kh) * (w / kw);
    return 5 * (h + w) * c + (h > w ? h : w) * c + 3 * n * c + 6 * c;
}

/* scsa_eval's `par` from the module's own tensors, without a torch operation per tensor: src[0..3] the four
 * SMSA convs' weights (C/4, 1, ks[i]), src[4..7] their biases (C/4), src[8..19] the twelve C-vectors in
 * par's order (GN_h's weight and bias, GN_w's, GN_1's, wq, bq, wk, bk, wv, bv); NULL for an absent bias.
 * k = max ks: each group's kernel is centred in the k taps, zeros around it, as the module's one kernel. */
void scsa_eval_pack(const float *const *src, const int64_t *ks, int64_t c, int64_t k, float *par) {
    const int64_t g = c / 4;
    memset(par, 0, (size_t)((k + 13) * c) * sizeof(float));
    for (int64_t i = 0; i < 4; ++i) {
        const int64_t pad = (k - ks[i]) / 2;
        for (int64_t j = 0; j < g; ++j) {
            for (int64_t t = 0; t < ks[i]; ++t) par[(pad + t) * c + i * g + j] = src[i][j * ks[i] + t];
            par[k * c + i * g + j] = src[4 + i] ? src[4 + i][j] : 0.f;
        }
    }
    for (int64_t v = 0; v < 12; ++v)
        if (src[8 + v]) memcpy(par + (k + 1 + v) * c, src[8 + v], (size_t)c * sizeof(float));
}

/* z ← σ(z) for n values, tmp n floats: e = exp(−min(|z|, 87)), σ = 1/(1 + e) for z ≥ 0, e/(1 + e) below. */
static void sigmoid_inplace(float *restrict z, float *restrict tmp, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float t = z[i] < 0.f ? z[i] : -z[i];
        tmp[i] = t < -87.f ? -87.f : t;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) tmp[i] = exp_bounded(tmp[i]);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) z[i] = (z[i] >= 0.f ? 1.f : tmp[i]) / (1.f + tmp[i]);
}

/* Mean and 1/sqrt(biased variance + eps) of the values v[q·ld + j], 0 ≤ q < rows, 0 ≤ j < len: two passes,
 * float32 sums (as torch's CPU GroupNorm accumulates). */
static void moments(const float *v, int64_t rows, int64_t ld, int64_t len, float eps, float *mean, float *rstd) {
    float sum = 0.f, sq = 0.f;
    for (int64_t q = 0; q < rows; ++q) {
        const float *restrict r = v + q * ld;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < len; ++j) sum += r[j];
    }
    const float m = sum / (float)(rows * len);
    for (int64_t q = 0; q < rows; ++q) {
        const float *restrict r = v + q * ld;
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < len; ++j) sq += (r[j] - m) * (r[j] - m);
    }
    *mean = m;
    *rstd = 1.f / sqrtf(sq / (float)(rows * len) + eps);
}

/* (2)-(3) for one direction: a (n, C) from the means m (n, C); wt (k, C); tmp n·C floats. */
static void eval_spatial_gate(const float *m, int64_t c, int64_t n, const float *wt, const float *restrict bias,
                              int64_t k, const float *restrict gw, const float *restrict gb, float eps, float *a,
                              float *tmp) {
    const int64_t p = (k - 1) / 2, g = c / 4;
    for (int64_t q = 0; q < n; ++q) {
        float *restrict o = a + q * c;
        memcpy(o, bias, (size_t)c * sizeof(float));
        for (int64_t t = 0; t < k; ++t) {
            const int64_t src = q + t - p;
            if (src < 0 || src >= n) continue;
            const float *restrict kern = wt + t * c, *restrict row = m + src * c;
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) o[j] += kern[j] * row[j];
        }
    }
    float mean[c], scale[c];
    for (int64_t grp = 0; grp < 4; ++grp) {
        float mu, rstd;
        moments(a + grp * g, n, c, g, eps, &mu, &rstd);
        for (int64_t j = grp * g; j < (grp + 1) * g; ++j) {
            mean[j] = mu;
            scale[j] = rstd * gw[j];
        }
    }
    for (int64_t q = 0; q < n; ++q) {
        float *restrict o = a + q * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) o[j] = (o[j] - mean[j]) * scale[j] + gb[j];
    }
    sigmoid_inplace(a, tmp, n * c);
}

/* (6)-(9) for one sample: ac (C) from the pooled y (N, C), overwritten by q; qc (C, N) q transposed, k (N, C),
 * v, l: C floats each. */
static void eval_channel_gate(float *y, int64_t c, int64_t n, const float *par, float eps, int64_t heads,
                              float s, float *qc, float *k, float *restrict v, float *l, float *ac) {
    const float *restrict gw = par, *restrict gb = par + c, *restrict wq = gb + c, *restrict bq = wq + c;
    const float *restrict wk = bq + c, *restrict bk = wk + c, *restrict wv = bk + c, *restrict bv = wv + c;
    float mu, rstd;
    moments(y, n, c, c, eps, &mu, &rstd);
    memset(v, 0, (size_t)c * sizeof(float));
    for (int64_t p = 0; p < n; ++p) {
        float *restrict yr = y + p * c, *restrict kr = k + p * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
            const float t = (yr[j] - mu) * rstd * gw[j] + gb[j];
            yr[j] = t * wq[j] + bq[j];
            kr[j] = t * wk[j] + bk[j];
            v[j] += t * wv[j] + bv[j];
        }
    }
    for (int64_t j = 0; j < c; ++j) v[j] /= (float)n;
    for (int64_t p = 0; p < n; ++p)
        for (int64_t j = 0; j < c; ++j) qc[j * n + p] = y[p * c + j];
    const int64_t d = c / heads;
    for (int64_t j = 0; j < c; ++j) {
        float top, z;
        const int64_t hd = j / d;
        ac[j] = attention_row(qc + j * n, k + hd * d, c, v + hd * d, d, n, s, l, &top, &z);
    }
    sigmoid_inplace(ac, l, c);
}

/* 0 if any of the n values is not finite (0 · v is 0 for finite v, NaN for ±inf and NaN). */
static int all_finite(const float *v, int64_t n) {
    float bad = 0.f;
#pragma omp simd reduction(+ : bad)
    for (int64_t i = 0; i < n; ++i) bad += 0.f * v[i];
    return bad == 0.f;
}

void scsa_eval(const float *x, int64_t batch, int64_t c, int64_t h, int64_t w, int cl, const float *par,
               int64_t k, const float *eps, int64_t kh, int64_t kw, int64_t heads, float scale, float *out,
               int32_t *flags, float *scratch, int threads) {
    const int64_t n = (h / kh) * (w / kw), plane = h * w, per_thread = scsa_eval_scratch(c, h, w, kh, kw);
    const float *bias = par + k * c, *norms = bias + c; /* GN_h's weight, bias, GN_w's; then GN_1's on */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *xb = x + b * c * plane;
        float *ob = out + b * c * plane;
        float *mh = scratch + (int64_t)omp_get_thread_num() * per_thread, *mw = mh + h * c, *ah = mw + w * c;
        float *aw = ah + h * c, *ahc = aw + w * c, *awc = ahc + h * c, *tmp = awc + w * c;
        float *y = tmp + (h > w ? h : w) * c, *qc = y + n * c, *kk = qc + n * c, *v = kk + n * c, *l = v + c;
        float *ac = l + c;
        if (cl) {
            means_cl_sample(xb, c, h, w, mh, mw);
        } else {
            for (int64_t j = 0; j < c; ++j) {
                means_plane(xb + j * plane, h, w, tmp, tmp + h);
                for (int64_t q = 0; q < h; ++q) mh[q * c + j] = tmp[q];
                for (int64_t q = 0; q < w; ++q) mw[q * c + j] = tmp[h + q];
            }
        }
        flags[b] = !(all_finite(mh, h * c) && all_finite(mw, w * c));
        if (flags[b]) continue;
        eval_spatial_gate(mh, c, h, par, bias, k, norms, norms + c, eps[0], ah, tmp);
        eval_spatial_gate(mw, c, w, par, bias, k, norms + 2 * c, norms + 3 * c, eps[1], aw, tmp);
        if (cl) {
            window_pool_cl_sample(xb, ah, aw, c, h, w, kh, kw, y);
        } else {
            for (int64_t j = 0; j < c; ++j) { /* the gates per plane: ahc (C, H), awc (C, W) */
                for (int64_t q = 0; q < h; ++q) ahc[j * h + q] = ah[q * c + j];
                for (int64_t q = 0; q < w; ++q) awc[j * w + q] = aw[q * c + j];
                window_pool_plane(xb + j * plane, ahc + j * h, awc + j * w, h, w, kh, kw, qc + j * n);
                for (int64_t p = 0; p < n; ++p) y[p * c + j] = qc[j * n + p];
            }
        }
        eval_channel_gate(y, c, n, norms + 4 * c, eps[2], heads, scale, qc, kk, v, l, ac);
        if (cl) {
            output_cl_sample(xb, ah, aw, ac, c, h, w, ob);
        } else {
            for (int64_t j = 0; j < c; ++j)
                output_plane(xb + j * plane, ahc + j * h, awc + j * w, ac[j], h, w, ob + j * plane);
        }
    }
}
