/* SCSA's passes over the feature map — the ones that read or write x, out, g or gx — and its one-pass
 * inference kernel, written once for the map's element type. Included twice by scsa_kernels.c: for
 * float32 maps (MAP float, the names as they are) and for bfloat16 maps (MAP uint16_t, the names ending in
 * _bf16), what a CPU autocast forward hands SCSA. The map's values become float32 as they are read (LD)
 * and are rounded to nearest even as they are written (ST); the gates, pooled maps and every sum are
 * float32, and the reductions over the map take LANES partial sums for either type, so a bf16 map gives
 * bit for bit what the float32 kernels give on the map cast to float32, the results cast back.
 *
 * Instantiated by map_float32.h or map_bf16.h (MAP, LD, ST, NAME; SUM_TARGET and STORE_SUM for the input
 * gradient, whose rows are summed in float32 before a bf16 map's values are rounded). No include guard,
 * on purpose. */

/* SMSA's pooling, Eq. (1), of one plane p (H × W): rh[h] = mean_w p[h, w], cw[w] = mean_h p[h, w]. */
static void NAME(means_plane)(const MAP *p, int64_t h, int64_t w, float *rh, float *cw) {
    memset(cw, 0, (size_t)w * sizeof(float));
    for (int64_t y = 0; y < h; ++y) {
        const MAP *row = p + y * w;
        float s = 0.f;
#pragma omp simd simdlen(LANES) reduction(+ : s)
        for (int64_t x0 = 0; x0 < w; ++x0) {
            const float v = LD(row[x0]);
            s += v;
            cw[x0] += v;
        }
        rh[y] = s / (float)w;
    }
    for (int64_t x0 = 0; x0 < w; ++x0) cw[x0] /= (float)h;
}

void NAME(scsa_means)(const MAP *x, int64_t planes, int64_t h, int64_t w, float *xh, float *xw, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) NAME(means_plane)(x + i * h * w, h, w, xh + i * h, xw + i * w);
}

/* PCSA's average pooling of x_s, Eq. (5): y[i, j] = mean over window (i, j) of x · ah ⊗ aw. The kh rows
 * of a window row are summed first (weighted by ah, as vectors), then each window's kw columns. */
static void NAME(window_pool_plane)(const MAP *p, const float *gh, const float *gw, int64_t h, int64_t w, int64_t kh,
                              int64_t kw, float *out) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
    float acc[w];
    for (int64_t r = 0; r < ho; ++r) {
        memset(acc, 0, (size_t)w * sizeof(float));
        for (int64_t y = r * kh; y < (r + 1) * kh; ++y) {
            const MAP *restrict row = p + y * w;
            const float t = gh[y];
#pragma omp simd simdlen(LANES)
            for (int64_t x0 = 0; x0 < w; ++x0) acc[x0] += LD(row[x0]) * t;
        }
        for (int64_t j = 0; j < wo; ++j) {
            float sum = 0.f;
            for (int64_t q = j * kw; q < (j + 1) * kw; ++q) sum += acc[q] * gw[q];
            out[r * wo + j] = sum * inv;
        }
    }
}

void NAME(scsa_window_pool)(const MAP *x, const float *ah, const float *aw, int64_t planes, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, float *out, int threads) {
    const int64_t n = (h / kh) * (w / kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i)
        NAME(window_pool_plane)(x + i * h * w, ah + i * h, aw + i * w, h, w, kh, kw, out + i * n);
}

/* The output, Eq. (10): out[h, w] = x · ah[h] · aw[w] · ac. */
static void NAME(output_plane)(const MAP *p, const float *gh, const float *restrict gw, float ac, int64_t h,
                               int64_t w, MAP *o) {
    for (int64_t y = 0; y < h; ++y) {
        const float t = gh[y] * ac;
        const MAP *restrict row = p + y * w;
        MAP *restrict orow = o + y * w;
#pragma omp simd simdlen(LANES)
        for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] = ST(LD(row[x0]) * t * gw[x0]);
    }
}

void NAME(scsa_output)(const MAP *x, const float *ah, const float *aw, const float *ac, int64_t planes, int64_t h,
                       int64_t w, MAP *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i)
        NAME(output_plane)(x + i * h * w, ah + i * h, aw + i * w, ac[i], h, w, out + i * h * w);
}

/* Backward of the output's reductions, with e = g · x:
 *   gac = sum e · ah ⊗ aw,  gah[h] = ac · sum_w e aw,  gaw[w] = ac · sum_h e ah. */
void NAME(scsa_output_backward)(const MAP *g, const MAP *x, const float *ah, const float *aw, const float *ac,
                          int64_t planes, int64_t h, int64_t w, float *gah, float *gaw, float *gac, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const MAP *gp = g + i * h * w, *p = x + i * h * w;
        const float *gh = ah + i * h, *gw = aw + i * w;
        float *oh = gah + i * h, *ow = gaw + i * w;
        memset(ow, 0, (size_t)w * sizeof(float));
        float total = 0.f;
        for (int64_t y = 0; y < h; ++y) {
            const float t = gh[y];
            float s = 0.f;
#pragma omp simd simdlen(LANES) reduction(+ : s)
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const float e = LD(gp[y * w + x0]) * LD(p[y * w + x0]);
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
void NAME(scsa_window_pool_backward)(const MAP *x, const float *ah, const float *aw, const float *gy, int64_t planes,
                               int64_t h, int64_t w, int64_t kh, int64_t kw, float *gah, float *gaw,
                               int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const MAP *p = x + i * h * w;
        const float *gh = ah + i * h, *gw = aw + i * w;
        float *oh = gah + i * h, *restrict ow = gaw + i * w;
        float re[w], rra[w];
        memset(oh, 0, (size_t)h * sizeof(float));
        memset(ow, 0, (size_t)w * sizeof(float));
        for (int64_t y = 0; y < ho * kh; ++y) {
            if (y % kh == 0) spread(gy + (i * ho + y / kh) * wo, gw, w, wo, kw, inv, re, rra);
            const MAP *restrict row = p + y * w;
            const float t = gh[y];
            float s = 0.f;
#pragma omp simd simdlen(LANES) reduction(+ : s)
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const float v = LD(row[x0]);
                s += v * rra[x0];
                ow[x0] += v * re[x0] * t;
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
void NAME(scsa_input_backward)(const MAP *g, const float *ah, const float *aw, const float *ac, const float *gy,
                         const float *gxh, const float *gxw, int64_t planes, int64_t h, int64_t w, int64_t kh,
                         int64_t kw, MAP *gx, int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw), rw = 1.f / (float)w, rh = 1.f / (float)h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
        const float *restrict gw = aw + i * w;
        MAP *restrict o = gx + i * h * w;
        float col[w], re[w], rra[w]; /* col: the means' column term gxw[w] / H, the same in every row */
        float row_sum[w] __attribute__((unused)); /* a bf16 map's row of gradient, summed in float32 */
        for (int64_t x0 = 0; x0 < w; ++x0) col[x0] = gxh ? gxw[i * w + x0] * rh : 0.f;
        for (int64_t y = 0; y < h; ++y) {
            const float t = ah[i * h + y], base = gxh ? gxh[i * h + y] * rw : 0.f;
            float *restrict orow = SUM_TARGET(o + y * w, row_sum);
            if (g) {
                const MAP *restrict grow = g + i * h * w + y * w;
                const float tc = t * ac[i];
#pragma omp simd simdlen(LANES)
                for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] = LD(grow[x0]) * tc * gw[x0] + (base + col[x0]);
            } else {
#pragma omp simd simdlen(LANES)
                for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] = base + col[x0];
            }
            if (gy && y < ho * kh) {
                if (y % kh == 0) spread(gy + (i * ho + y / kh) * wo, gw, w, wo, kw, inv, re, rra);
#pragma omp simd simdlen(LANES)
                for (int64_t x0 = 0; x0 < w; ++x0) orow[x0] += t * rra[x0];
            }
            STORE_SUM(o + y * w, orow, w);
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
static void NAME(means_cl_sample)(const MAP *x, int64_t c, int64_t h, int64_t w, float *xht, float *restrict cw) {
    const float rw = 1.f / (float)w, rh = 1.f / (float)h;
    memset(cw, 0, (size_t)(w * c) * sizeof(float));
    for (int64_t y = 0; y < h; ++y) {
        float *restrict r = xht + y * c;
        memset(r, 0, (size_t)c * sizeof(float));
        for (int64_t x0 = 0; x0 < w; ++x0) {
            const MAP *restrict p = x + (y * w + x0) * c;
            float *restrict q = cw + x0 * c;
#pragma omp simd simdlen(LANES)
            for (int64_t k = 0; k < c; ++k) {
                const float v = LD(p[k]);
                r[k] += v;
                q[k] += v;
            }
        }
#pragma omp simd simdlen(LANES)
        for (int64_t k = 0; k < c; ++k) r[k] *= rw;
    }
#pragma omp simd simdlen(LANES)
    for (int64_t k = 0; k < w * c; ++k) cw[k] *= rh;
}

void NAME(scsa_means_cl)(const MAP *x, int64_t b, int64_t c, int64_t h, int64_t w, float *xht, float *xwt,
                   int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) NAME(means_cl_sample)(x + n * h * w * c, c, h, w, xht + n * h * c, xwt + n * w * c);
}

/* Eq. (5): out[n, i, j, :] = mean over window (i, j) of x · ah ⊗ aw. */
static void NAME(window_pool_cl_sample)(const MAP *x, const float *aht, const float *awt, int64_t c, int64_t h,
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
                    const MAP *restrict p = x + (y * w + x0) * c;
                    const float *restrict gw = awt + x0 * c;
#pragma omp simd simdlen(LANES)
                    for (int64_t k = 0; k < c; ++k) row[k] += LD(p[k]) * gw[k];
                }
                const float *restrict gh = aht + y * c;
#pragma omp simd simdlen(LANES)
                for (int64_t k = 0; k < c; ++k) o[k] += row[k] * gh[k];
            }
#pragma omp simd simdlen(LANES)
            for (int64_t k = 0; k < c; ++k) o[k] *= inv;
        }
}

void NAME(scsa_window_pool_cl)(const MAP *x, const float *aht, const float *awt, int64_t b, int64_t c, int64_t h,
                         int64_t w, int64_t kh, int64_t kw, float *out, int threads) {
    const int64_t n_out = (h / kh) * (w / kw) * c;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n)
        NAME(window_pool_cl_sample)(x + n * h * w * c, aht + n * h * c, awt + n * w * c, c, h, w, kh, kw, out + n * n_out);
}

/* Eq. (10): out = x · ah · aw · ac. */
static void NAME(output_cl_sample)(const MAP *x, const float *aht, const float *awt, const float *restrict gc,
                                   int64_t c, int64_t h, int64_t w, MAP *out) {
    float t[c];
    for (int64_t y = 0; y < h; ++y) {
        const float *restrict gh = aht + y * c;
#pragma omp simd simdlen(LANES)
        for (int64_t k = 0; k < c; ++k) t[k] = gh[k] * gc[k];
        for (int64_t x0 = 0; x0 < w; ++x0) {
            const int64_t at = (y * w + x0) * c;
            const MAP *restrict p = x + at;
            const float *restrict gw = awt + x0 * c;
            MAP *restrict o = out + at;
#pragma omp simd simdlen(LANES)
            for (int64_t k = 0; k < c; ++k) o[k] = ST(LD(p[k]) * t[k] * gw[k]);
        }
    }
}

void NAME(scsa_output_cl)(const MAP *x, const float *aht, const float *awt, const float *ac, int64_t b, int64_t c,
                          int64_t h, int64_t w, MAP *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n)
        NAME(output_cl_sample)(x + n * h * w * c, aht + n * h * c, awt + n * w * c, ac + n * c, c, h, w, out + n * h * w * c);
}

/* Backward of the output's reductions (e = g · x): gac = sum e ah aw, gah = ac sum_x0 e aw,
 * gaw = ac sum_y e ah. */
void NAME(scsa_output_backward_cl)(const MAP *g, const MAP *x, const float *aht, const float *awt, const float *ac,
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
                const MAP *restrict gp = g + at, *restrict p = x + at;
                const float *restrict gw = awt + (n * w + x0) * c;
                float *restrict q = ow + x0 * c;
#pragma omp simd simdlen(LANES)
                for (int64_t k = 0; k < c; ++k) {
                    const float e = LD(gp[k]) * LD(p[k]);
                    s[k] += e * gw[k];
                    q[k] += e * gh[k];
                }
            }
            float *restrict oh = gaht + (n * h + y) * c;
#pragma omp simd simdlen(LANES)
            for (int64_t k = 0; k < c; ++k) {
                oh[k] = s[k] * gc[k];
                total[k] += s[k] * gh[k];
            }
        }
#pragma omp simd simdlen(LANES)
        for (int64_t q = 0; q < w * c; ++q) ow[q] *= gc[q % c];
    }
}

/* Backward of the window pooling into the gates, r = gy[y / kh, x0 / kw] / (kh·kw) inside the windows:
 * gah = sum_x0 x r aw, gaw = sum_y x r ah (overwritten). */
void NAME(scsa_window_pool_backward_cl)(const MAP *x, const float *aht, const float *awt, const float *gy, int64_t b,
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
                const MAP *restrict p = x + ((n * h + y) * w + x0) * c;
                const float *restrict gw = awt + (n * w + x0) * c;
                const float *restrict r = gy + ((n * ho + y / kh) * wo + x0 / kw) * c;
                float *restrict q = ow + x0 * c;
#pragma omp simd simdlen(LANES)
                for (int64_t k = 0; k < c; ++k) {
                    const float v = LD(p[k]) * r[k] * inv;
                    oh[k] += v * gw[k];
                    q[k] += v * gh[k];
                }
            }
        }
    }
}

/* The whole input gradient in one pass, as scsa_input_backward: g · ah aw ac (if g) + r · ah aw (if gy)
 * + gxh / W + gxw / H (if gxh; gxht, gxwt transposed like the gates). */
void NAME(scsa_input_backward_cl)(const MAP *g, const float *aht, const float *awt, const float *ac, const float *gy,
                            const float *gxht, const float *gxwt, int64_t b, int64_t c, int64_t h, int64_t w,
                            int64_t kh, int64_t kw, MAP *gx, int threads) {
    const int64_t ho = h / kh, wo = w / kw;
    const float inv = 1.f / (float)(kh * kw), rw = 1.f / (float)w, rh = 1.f / (float)h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < b; ++n) {
        float t[c], base[c], position_sum[c] __attribute__((unused)); /* position_sum: for a bf16 map */
        const float *restrict gc = ac + n * c;
        for (int64_t y = 0; y < h; ++y) {
            const float *restrict gh = aht + (n * h + y) * c;
#pragma omp simd simdlen(LANES)
            for (int64_t k = 0; k < c; ++k) {
                t[k] = gh[k] * gc[k];
                base[k] = gxht ? gxht[(n * h + y) * c + k] * rw : 0.f;
            }
            for (int64_t x0 = 0; x0 < w; ++x0) {
                const int64_t at = ((n * h + y) * w + x0) * c;
                const float *restrict gw = awt + (n * w + x0) * c;
                float *restrict o = SUM_TARGET(gx + at, position_sum);
                if (gxht) {
                    const float *restrict col = gxwt + (n * w + x0) * c;
#pragma omp simd simdlen(LANES)
                    for (int64_t k = 0; k < c; ++k) o[k] = base[k] + col[k] * rh;
                } else {
                    memset(o, 0, (size_t)c * sizeof(float));
                }
                if (g) {
                    const MAP *restrict gp = g + at;
#pragma omp simd simdlen(LANES)
                    for (int64_t k = 0; k < c; ++k) o[k] += LD(gp[k]) * t[k] * gw[k];
                }
                if (gy && y < ho * kh && x0 < wo * kw) {
                    const float *restrict r = gy + ((n * ho + y / kh) * wo + x0 / kw) * c;
#pragma omp simd simdlen(LANES)
                    for (int64_t k = 0; k < c; ++k) o[k] += r[k] * inv * gh[k] * gw[k];
                }
                STORE_SUM(gx + at, o, c);
            }
        }
    }
}

void NAME(scsa_eval)(const MAP *x, int64_t batch, int64_t c, int64_t h, int64_t w, int cl, const float *par,
               int64_t k, const float *eps, int64_t kh, int64_t kw, int64_t heads, float scale, MAP *out,
               int32_t *flags, float *scratch, int threads) {
    const int64_t n = (h / kh) * (w / kw), plane = h * w, per_thread = scsa_eval_scratch(c, h, w, kh, kw);
    const float *bias = par + k * c, *norms = bias + c; /* GN_h's weight, bias, GN_w's; then GN_1's on */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const MAP *xb = x + b * c * plane;
        MAP *ob = out + b * c * plane;
        float *mh = scratch + (int64_t)omp_get_thread_num() * per_thread, *mw = mh + h * c, *ah = mw + w * c;
        float *aw = ah + h * c, *ahc = aw + w * c, *awc = ahc + h * c, *tmp = awc + w * c;
        float *y = tmp + (h > w ? h : w) * c, *qc = y + n * c, *kk = qc + n * c, *v = kk + n * c, *l = v + c;
        float *ac = l + c;
        if (cl) {
            NAME(means_cl_sample)(xb, c, h, w, mh, mw);
        } else {
            for (int64_t j = 0; j < c; ++j) {
                NAME(means_plane)(xb + j * plane, h, w, tmp, tmp + h);
                for (int64_t q = 0; q < h; ++q) mh[q * c + j] = tmp[q];
                for (int64_t q = 0; q < w; ++q) mw[q * c + j] = tmp[h + q];
            }
        }
        flags[b] = !(all_finite(mh, h * c) && all_finite(mw, w * c));
        if (flags[b]) continue;
        spatial_gate(mh, c, h, par, bias, k, norms, norms + c, eps[0], ah, tmp, NULL);
        spatial_gate(mw, c, w, par, bias, k, norms + 2 * c, norms + 3 * c, eps[1], aw, tmp, NULL);
        if (cl) {
            NAME(window_pool_cl_sample)(xb, ah, aw, c, h, w, kh, kw, y);
        } else {
            for (int64_t j = 0; j < c; ++j) { /* the gates per plane: ahc (C, H), awc (C, W) */
                for (int64_t q = 0; q < h; ++q) ahc[j * h + q] = ah[q * c + j];
                for (int64_t q = 0; q < w; ++q) awc[j * w + q] = aw[q * c + j];
                NAME(window_pool_plane)(xb + j * plane, ahc + j * h, awc + j * w, h, w, kh, kw, qc + j * n);
                for (int64_t p = 0; p < n; ++p) y[p * c + j] = qc[j * n + p];
            }
        }
        channel_gate(y, c, n, norms + 4 * c, eps[2], heads, scale, qc, kk, v, l, ac, NULL);
        if (cl) {
            NAME(output_cl_sample)(xb, ah, aw, ac, c, h, w, ob);
        } else {
            for (int64_t j = 0; j < c; ++j)
                NAME(output_plane)(xb + j * plane, ahc + j * h, awc + j * w, ac[j], h, w, ob + j * plane);
        }
    }
}
