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
#include <stdint.h>
#include <string.h>

/* SMSA's pooling, Eq. (1): xh[h] = mean_w x[h, w], xw[w] = mean_h x[h, w]. */
void scsa_means(const float *x, int64_t planes, int64_t h, int64_t w, float *xh, float *xw, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *p = x + i * h * w;
        float *rh = xh + i * h, *cw = xw + i * w;
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
void scsa_window_pool(const float *x, const float *ah, const float *aw, int64_t planes, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, float *out, int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *p = x + i * h * w, *gh = ah + i * h, *gw = aw + i * w;
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
                out[(i * ho + r) * wo + j] = sum * inv;
            }
        }
    }
}

/* The output, Eq. (10): out[h, w] = x · ah[h] · aw[w] · ac. */
void scsa_output(const float *x, const float *ah, const float *aw, const float *ac, int64_t planes, int64_t h,
                 int64_t w, float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *p = x + i * h * w, *gw = aw + i * w;
        float *o = out + i * h * w;
        for (int64_t y = 0; y < h; ++y) {
            const float t = ah[i * h + y] * ac[i];
#pragma omp simd
            for (int64_t x0 = 0; x0 < w; ++x0) o[y * w + x0] = p[y * w + x0] * t * gw[x0];
        }
    }
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
void scsa_means_cl(const float *x, int64_t b, int64_t c, int64_t h, int64_t w, float *xht, float *xwt,
                   int threads) {
    const float rw = 1.f / (float)w, rh = 1.f / (float)h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float *restrict cw = xwt + n * w * c;
        memset(cw, 0, (size_t)(w * c) * sizeof(float));
        for (int64_t y = 0; y < h; ++y) {
            float *restrict r = xht + (n * h + y) * c;
            memset(r, 0, (size_t)c * sizeof(float));
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const float *restrict p = x + ((n * h + y) * w + x0) * c;
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
}

/* Eq. (5): out[n, i, j, :] = mean over window (i, j) of x · ah ⊗ aw. */
void scsa_window_pool_cl(const float *x, const float *aht, const float *awt, int64_t b, int64_t c, int64_t h,
                         int64_t w, int64_t kh, int64_t kw, float *out, int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float row[c];
        for (int64_t i = 0; i < ho; ++i)
            for (int64_t j = 0; j < wo; ++j) {
                float *restrict o = out + ((n * ho + i) * wo + j) * c;
                memset(o, 0, (size_t)c * sizeof(float));
                for (int64_t y = i * kh; y < (i + 1) * kh; ++y) {
                    memset(row, 0, (size_t)c * sizeof(float));
                    for (int64_t x0 = j * kw; x0 < (j + 1) * kw; ++x0) {
                        const float *restrict p = x + ((n * h + y) * w + x0) * c, *restrict gw = awt + (n * w + x0) * c;
#pragma omp simd
                        for (int64_t k = 0; k < c; ++k) row[k] += p[k] * gw[k];
                    }
                    const float *restrict gh = aht + (n * h + y) * c;
#pragma omp simd
                    for (int64_t k = 0; k < c; ++k) o[k] += row[k] * gh[k];
                }
#pragma omp simd
                for (int64_t k = 0; k < c; ++k) o[k] *= inv;
            }
    }
}

/* Eq. (10): out = x · ah · aw · ac. */
void scsa_output_cl(const float *x, const float *aht, const float *awt, const float *ac, int64_t b, int64_t c,
                    int64_t h, int64_t w, float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float t[c];
        for (int64_t y = 0; y < h; ++y) {
            const float *restrict gh = aht + (n * h + y) * c, *restrict gc = ac + n * c;
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) t[k] = gh[k] * gc[k];
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const int64_t at = ((n * h + y) * w + x0) * c;
                const float *restrict p = x + at, *restrict gw = awt + (n * w + x0) * c;
                float *restrict o = out + at;
#pragma omp simd
                for (int64_t k = 0; k < c; ++k) o[k] = p[k] * t[k] * gw[k];
            }
        }
    }
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
