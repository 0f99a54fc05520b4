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
