/* HAM's training passes over the feature map — the ones that read or write x, out, g or gx — written
 * once for the map's element type. Included twice by ham_kernels.c: for float32 maps (MAP float, the
 * kernels' names as they are) and for bfloat16 maps (MAP uint16_t, the names ending in _bf16), which is
 * what a CPU autocast forward hands HAM. The map's values become float32 as they are read (LD) and are
 * rounded to nearest even as they are written (ST); everything else (the weights, descriptors, spatial
 * maps and every sum) is float32, so a bf16 map gives bit for bit what the float32 kernels give on the
 * map cast to float32 with the results cast back, without those casts' passes over the map.
 *
 * Instantiated by map_float32.h or map_bf16.h (MAP, LD, ST, NAME; SUM_TARGET and STORE_SUM for the input
 * gradient, whose samples are summed in float32 scratch before a bf16 map's values are rounded). No
 * include guard, on purpose. */

/* The sum and the maximum of a row's n values (the max as vmaxps, which passes a NaN by: the callers
 * check the sum, which a NaN reaches). */
static inline void NAME(row_sum_max)(const MAP *row, int64_t n, float *sum, float *max) {
    float s = 0.f, m = LD(row[0]);
#pragma omp simd simdlen(LANES) reduction(+ : s) reduction(max : m)
    for (int64_t p = 0; p < n; ++p) {
        const float v = LD(row[p]);
        s += v;
        m = v > m ? v : m;
    }
    *sum = s;
    *max = m;
}

/* Channel pooling, paper Eq. (1): mean and max over the N positions of every (b, c) row, and the
 * first position of the max (max pooling's rule: the first of equal maxima, NaN wins). */
void NAME(ham_pool)(const MAP *x, int64_t rows, int64_t n, float *avg, float *mx, int32_t *arg, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const MAP *row = x + r * n;
        float s, m;
        NAME(row_sum_max)(row, n, &s, &m);
        int32_t at = 0;
        if (isnan(s)) { /* a NaN (or inf - inf) somewhere: find the first NaN as max pooling does */
            m = LD(row[0]);
            for (int64_t p = 0; p < n; ++p) {
                const float v = LD(row[p]);
                if (v > m || isnan(v)) { m = v; at = (int32_t)p; if (isnan(m)) break; }
            }
        } else {
            for (int64_t p = 0; p < n; ++p) {
                if (LD(row[p]) == m) { at = (int32_t)p; break; }
            }
        }
        avg[r] = s / (float)n;
        mx[r] = m;
        arg[r] = at;
    }
}

/* The groups' spatial descriptors, Eq. (7): at every position p,
 *   d1 = [sum_c x·w1 / n1 ; max_c x·w1],  d2 = [sum_c x·w2 / n2 ; max_c x·w2]
 * written as d1, d2 (B, 2, N), with the first channel of each max in i1, i2 (B, N). */
void NAME(ham_descriptors)(const MAP *x, const float *w1, const float *w2, int64_t batch, int64_t c, int64_t n,
                     float n1, float n2, float *d1, float *d2, int32_t *i1, int32_t *i2, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const MAP *xb = x + b * c * n;
        const float *wb1 = w1 + b * c, *wb2 = w2 + b * c;
        float *db1 = d1 + b * 2 * n, *db2 = d2 + b * 2 * n;
        int32_t *ib1 = i1 + b * n, *ib2 = i2 + b * n;
        for (int64_t p0 = 0; p0 < n; p0 += TILE) {
            const int64_t len = n - p0 < TILE ? n - p0 : TILE;
            float s1[TILE], m1[TILE], s2[TILE], m2[TILE];
            int32_t k1[TILE], k2[TILE];
            {
                const MAP *row = xb + p0;
                const float u1 = wb1[0], u2 = wb2[0];
#pragma omp simd
                for (int64_t p = 0; p < len; ++p) {
                    const float t1 = LD(row[p]) * u1, t2 = LD(row[p]) * u2;
                    s1[p] = t1; m1[p] = t1; k1[p] = 0;
                    s2[p] = t2; m2[p] = t2; k2[p] = 0;
                }
            }
            for (int64_t ch = 1; ch < c; ++ch) {
                const MAP *row = xb + ch * n + p0;
                const float u1 = wb1[ch], u2 = wb2[ch];
                const int32_t k = (int32_t)ch;
#pragma omp simd
                for (int64_t p = 0; p < len; ++p) {
                    const float t1 = LD(row[p]) * u1, t2 = LD(row[p]) * u2, o1 = m1[p], o2 = m2[p];
                    /* The index as a bitwise blend (g all ones where the max moves): written as
                     * `g ? k : k1[p]` GCC turns it into a masked store, microcoded and several times
                     * slower on AMD's AVX2 CPUs; the max itself becomes vmaxps. */
                    const int32_t g1 = -(int32_t)(t1 > o1), g2 = -(int32_t)(t2 > o2);
                    s1[p] += t1;
                    s2[p] += t2;
                    m1[p] = t1 > o1 ? t1 : o1; k1[p] = (k & g1) | (k1[p] & ~g1);
                    m2[p] = t2 > o2 ? t2 : o2; k2[p] = (k & g2) | (k2[p] & ~g2);
                }
            }
            for (int64_t p = 0; p < len; ++p) {
                db1[p0 + p] = s1[p] / n1;
                db1[n + p0 + p] = m1[p];
                db2[p0 + p] = s2[p] / n2;
                db2[n + p0 + p] = m2[p];
                ib1[p0 + p] = k1[p];
                ib2[p0 + p] = k2[p];
            }
        }
    }
}

/* The recombination, Eq. (10): out = x · (w1 ⊗ a1 + w2 ⊗ a2), the maps a = [a1; a2] (B, 2, N). */
void NAME(ham_recombine)(const MAP *x, const float *w1, const float *w2, const float *a, int64_t batch, int64_t c, int64_t n, MAP *out, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t r = b * c + ch;
            const MAP *row = x + r * n;
            const float *p1 = a + b * 2 * n, *p2 = p1 + n, u1 = w1[r], u2 = w2[r];
            MAP *o = out + r * n;
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) o[p] = ST(LD(row[p]) * (u1 * p1[p] + u2 * p2[p]));
        }
    }
}

/* Backward of the recombination's reductions, with h = g·x:
 *   gw1[b, c] = sum_p h a1,  gw2[b, c] = sum_p h a2,  ga[b, i, p] = sum_c h w_i  (ga like a: (B, 2, N)). */
void NAME(ham_recombine_backward)(const MAP *g, const MAP *x, const float *w1, const float *w2, const float *a,
                            int64_t batch, int64_t c, int64_t n, float *gw1, float *gw2, float *ga, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *p1 = a + b * 2 * n, *p2 = p1 + n;
        float *q1 = ga + b * 2 * n, *q2 = q1 + n;
        memset(q1, 0, (size_t)n * sizeof(float));
        memset(q2, 0, (size_t)n * sizeof(float));
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t r = b * c + ch;
            const MAP *gr = g + r * n, *xr = x + r * n;
            const float u1 = w1[r], u2 = w2[r];
            float s1 = 0.f, s2 = 0.f;
#pragma omp simd simdlen(LANES) reduction(+ : s1, s2)
            for (int64_t p = 0; p < n; ++p) {
                const float h = LD(gr[p]) * LD(xr[p]);
                s1 += h * p1[p];
                s2 += h * p2[p];
                q1[p] += h * u1;
                q2[p] += h * u2;
            }
            gw1[r] = s1;
            gw2[r] = s2;
        }
    }
}

/* Backward of the descriptors into the weights, with e_i = gd_i[avg] / n_i and f_i = gd_i[max]:
 *   gw_i[b, c] = sum_p x e_i + sum_{p : idx_i[p] = c} x f_i.
 * gd1, gd2 (B, 2, N) in the layout of ham_descriptors' d1, d2. */
void NAME(ham_descriptors_backward)(const MAP *x, const float *gd1, const float *gd2, const int32_t *i1, const int32_t *i2,
                              int64_t batch, int64_t c, int64_t n, float n1, float n2, float *gw1, float *gw2,
                              int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const MAP *xb = x + b * c * n;
        const float *e1 = gd1 + b * 2 * n, *f1 = e1 + n, *e2 = gd2 + b * 2 * n, *f2 = e2 + n;
        const int32_t *k1 = i1 + b * n, *k2 = i2 + b * n;
        float *o1 = gw1 + b * c, *o2 = gw2 + b * c;
        for (int64_t ch = 0; ch < c; ++ch) {
            const MAP *xr = xb + ch * n;
            float s1 = 0.f, s2 = 0.f;
#pragma omp simd simdlen(LANES) reduction(+ : s1, s2)
            for (int64_t p = 0; p < n; ++p) {
                s1 += LD(xr[p]) * e1[p];
                s2 += LD(xr[p]) * e2[p];
            }
            o1[ch] = s1 / n1;
            o2[ch] = s2 / n2;
        }
        for (int64_t p = 0; p < n; ++p) {
            o1[k1[p]] += LD(xb[(int64_t)k1[p] * n + p]) * f1[p];
            o2[k2[p]] += LD(xb[(int64_t)k2[p] * n + p]) * f2[p];
        }
    }
}

/* The whole input gradient in one pass over the map:
 *   gx = g (w1 a1 + w2 a2)                        recombination (if g)
 *      + w1 e1 + w2 e2 + [c = i1] w1 f1 + [c = i2] w2 f2   descriptors (if gd1, gd2)
 *      + gavg / N + [p = arg] gmax                  channel pooling (if gavg)
 * with e_i, f_i as in ham_descriptors_backward. A NULL g, gd1 (then gd2 too) or gavg leaves its terms out. */
void NAME(ham_input_backward)(const MAP *g, const float *w1, const float *w2, const float *a, const float *gd1,
                        const float *gd2, const int32_t *i1, const int32_t *i2, float n1, float n2,
                        const float *gavg, const float *gmax, const int32_t *arg, int64_t batch, int64_t c,
                        int64_t n, MAP *gx, float *scratch, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        /* the sample's gradient (C, N), summed in gx itself or, for bf16, in the thread's scratch */
        float *ob = SUM_TARGET(gx + b * c * n, scratch + (int64_t)omp_get_thread_num() * c * n);
        const int gd = gd1 != 0;
        const float *p1 = g ? a + b * 2 * n : 0, *p2 = g ? p1 + n : 0;
        const float *e1 = gd ? gd1 + b * 2 * n : 0, *f1 = gd ? e1 + n : 0;
        const float *e2 = gd ? gd2 + b * 2 * n : 0, *f2 = gd ? e2 + n : 0;
        const float r1 = 1.f / n1, r2 = 1.f / n2;
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t r = b * c + ch;
            const float u1 = w1[r], u2 = w2[r], v1 = u1 * r1, v2 = u2 * r2;
            const float base = gavg ? gavg[r] / (float)n : 0.f;
            float *o = ob + ch * n;
            if (g && gd) {
                const MAP *gr = g + r * n;
#pragma omp simd
                for (int64_t p = 0; p < n; ++p)
                    o[p] = LD(gr[p]) * (u1 * p1[p] + u2 * p2[p]) + (v1 * e1[p] + v2 * e2[p]) + base;
            } else if (g) {
                const MAP *gr = g + r * n;
#pragma omp simd
                for (int64_t p = 0; p < n; ++p) o[p] = LD(gr[p]) * (u1 * p1[p] + u2 * p2[p]) + base;
            } else if (gd) {
#pragma omp simd
                for (int64_t p = 0; p < n; ++p) o[p] = (v1 * e1[p] + v2 * e2[p]) + base;
            } else {
                for (int64_t p = 0; p < n; ++p) o[p] = base;
            }
            if (gavg) o[arg[r]] += gmax[r];
        }
        if (gd) {
            const int32_t *k1 = i1 + b * n, *k2 = i2 + b * n;
            const float *wb1 = w1 + b * c, *wb2 = w2 + b * c;
            for (int64_t p = 0; p < n; ++p) {
                ob[(int64_t)k1[p] * n + p] += wb1[k1[p]] * f1[p];
                ob[(int64_t)k2[p] * n + p] += wb2[k2[p]] * f2[p];
            }
        }
        STORE_SUM(gx + b * c * n, ob, c * n);
    }
}

/* ---- The same passes for maps in the channels-last layout: x[b, p, c] at (b·N + p)·C + c. ----
 * The descriptors, maps and their gradients keep the planar layouts above ((B, 2, N), (B, N)); only
 * the map-sized tensors x, g, out and gx are channels-last. */

void NAME(ham_pool_cl)(const MAP *x, int64_t batch, int64_t n, int64_t c, float *avg, float *mx, int32_t *arg,
                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const MAP *xb = x + b * n * c;
        float *s = avg + b * c, *m = mx + b * c;
        int32_t *a = arg + b * c;
        for (int64_t ch = 0; ch < c; ++ch) { s[ch] = LD(xb[ch]); m[ch] = LD(xb[ch]); a[ch] = 0; }
        for (int64_t p = 1; p < n; ++p) {
            const MAP *row = xb + p * c;
            const int32_t q = (int32_t)p;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) {
                const float v = LD(row[ch]), old = m[ch];
                const int32_t at = a[ch];
                const int gt = v > old || (v != v && old == old);
                s[ch] += v;
                m[ch] = gt ? v : old; /* loaded, selected, stored: not a masked store (see ham_descriptors) */
                a[ch] = gt ? q : at;
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) s[ch] /= (float)n;
    }
}

/* t[ch][j] ← row j's channel ch of a VL × VL tile whose rows (positions) lie c values apart: at this fixed
 * size GCC writes the transposition with shuffles (vpermt2ps on AVX-512, unpck/perm2f128 on AVX2), where the
 * same values loaded column by column cost a scalar load and an insert each. ham_descriptors_cl reads its
 * whole tiles so: the kernel 1.39-1.48× faster at ResNet-20's three stages with AVX-512, 1.29-1.34× built
 * for AVX2 (AMD Zen 4, side by side, 2026-12-07), and bit for bit the same (the channels in order). */
static inline void NAME(tile_columns)(const MAP *src, int64_t c, float t[VL][VL]) {
    for (int64_t ch = 0; ch < VL; ++ch)
        for (int64_t j = 0; j < VL; ++j) t[ch][j] = LD(src[j * c + ch]);
}

/* One channel's step of the descriptors for VL positions: sums, maxima and the blended arg-max index. */
#define DESCRIPTOR_STEP(v_of_j, u1, u2, k)                                                                  \
    _Pragma("omp simd") for (int64_t j = 0; j < VL; ++j) {                                                \
        const float v = (v_of_j), t1 = v * (u1), t2 = v * (u2), o1 = m1[j], o2 = m2[j];                     \
        /* the index blended bitwise: see ham_descriptors */                                              \
        const int32_t g1 = -(int32_t)(t1 > o1), g2 = -(int32_t)(t2 > o2);                                  \
        s1[j] += t1; s2[j] += t2;                                                                         \
        m1[j] = t1 > o1 ? t1 : o1; k1[j] = ((k) & g1) | (k1[j] & ~g1);                                     \
        m2[j] = t2 > o2 ? t2 : o2; k2[j] = ((k) & g2) | (k2[j] & ~g2);                                     \
    }

/* Descriptors: per position the sums and the first arg-max over the C channels of one row, for VL
 * positions at a time, the VL lanes kept in registers: whole tiles of VL channels transposed
 * (NAME(tile_columns)), the rest loaded across the rows. */
void NAME(ham_descriptors_cl)(const MAP *x, const float *w1, const float *w2, int64_t batch, int64_t c, int64_t n,
                        float n1, float n2, float *d1, float *d2, int32_t *i1, int32_t *i2, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t p0 = 0; p0 < n; p0 += VL) {
            const MAP *xb = x + b * n * c;
            const float *wb1 = w1 + b * c, *wb2 = w2 + b * c;
            const int64_t len = n - p0 < VL ? n - p0 : VL;
            float s1[VL], m1[VL], s2[VL], m2[VL];
            int32_t k1[VL], k2[VL];
            for (int64_t j = 0; j < VL; ++j) {
                const float v = j < len ? LD(xb[(p0 + j) * c]) : 0.f;
                s1[j] = m1[j] = v * wb1[0]; s2[j] = m2[j] = v * wb2[0]; k1[j] = k2[j] = 0;
            }
            int64_t ch = 1;
            if (len == VL) { /* whole tiles of VL channels, transposed (the channels in order, as below) */
                float t[VL][VL];
                for (int64_t ch0 = 0; ch0 + VL <= c; ch0 += VL, ch = ch0) {
                    NAME(tile_columns)(xb + p0 * c + ch0, c, t);
                    for (int64_t q = ch0 == 0 ? 1 : 0; q < VL; ++q) {
                        const float u1 = wb1[ch0 + q], u2 = wb2[ch0 + q];
                        const int32_t k = (int32_t)(ch0 + q);
                        DESCRIPTOR_STEP(t[q][j], u1, u2, k)
                    }
                }
            }
            for (; ch < c; ++ch) {
                const float u1 = wb1[ch], u2 = wb2[ch];
                const int32_t k = (int32_t)ch;
                const MAP *col = xb + p0 * c + ch;
                if (len == VL) {
                    DESCRIPTOR_STEP(LD(col[j * c]), u1, u2, k)
                } else {
                    for (int64_t j = 0; j < len; ++j) {
                        const float v = LD(col[j * c]), t1 = v * u1, t2 = v * u2, o1 = m1[j], o2 = m2[j];
                        const int32_t g1 = -(int32_t)(t1 > o1), g2 = -(int32_t)(t2 > o2);
                        s1[j] += t1; s2[j] += t2;
                        m1[j] = t1 > o1 ? t1 : o1; k1[j] = (k & g1) | (k1[j] & ~g1);
                        m2[j] = t2 > o2 ? t2 : o2; k2[j] = (k & g2) | (k2[j] & ~g2);
                    }
                }
            }
            float *db1 = d1 + b * 2 * n, *db2 = d2 + b * 2 * n;
            for (int64_t j = 0; j < len; ++j) {
                db1[p0 + j] = s1[j] / n1; db1[n + p0 + j] = m1[j];
                db2[p0 + j] = s2[j] / n2; db2[n + p0 + j] = m2[j];
                i1[b * n + p0 + j] = k1[j]; i2[b * n + p0 + j] = k2[j];
            }
        }
    }
}
#undef DESCRIPTOR_STEP

void NAME(ham_recombine_cl)(const MAP *x, const float *w1, const float *w2, const float *a, int64_t batch, int64_t c,
                      int64_t n, MAP *out, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t p = 0; p < n; ++p) {
            const MAP *row = x + (b * n + p) * c;
            const float *u1 = w1 + b * c, *u2 = w2 + b * c;
            const float q1 = a[b * 2 * n + p], q2 = a[b * 2 * n + n + p];
            MAP *o = out + (b * n + p) * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) o[ch] = ST(LD(row[ch]) * (u1[ch] * q1 + u2[ch] * q2));
        }
    }
}

/* t[q][j] ← h[j][q] for a VL × VL tile (shuffles, as NAME(tile_columns)). */
static inline void NAME(transpose_tile)(float h[VL][VL], float t[VL][VL]) {
    for (int64_t q = 0; q < VL; ++q)
        for (int64_t j = 0; j < VL; ++j) t[q][j] = h[j][q];
}

/* Position p's terms of ham_recombine_backward for the channels [ch0, c): the weights' sums into o1, o2 and
 * the position's sums over those channels added to *s1, *s2. */
static inline void NAME(recombine_backward_row)(const MAP *gr, const MAP *xr, const float *u1, const float *u2,
                                                float a1, float a2, int64_t ch0, int64_t c, float *o1, float *o2,
                                                float *s1, float *s2) {
    float t1 = 0.f, t2 = 0.f;
#pragma omp simd simdlen(LANES) reduction(+ : t1, t2)
    for (int64_t ch = ch0; ch < c; ++ch) {
        const float h = LD(gr[ch]) * LD(xr[ch]);
        o1[ch] += h * a1;
        o2[ch] += h * a2;
        t1 += h * u1[ch];
        t2 += h * u2[ch];
    }
    *s1 += t1;
    *s2 += t2;
}

/* For C = VL channels (and 2·VL with 16 lanes) the per-position sums over the channels (ga) are taken VL
 * positions at a time: the products of a VL × VL tile transposed, then summed channel after channel in
 * vector registers, instead of a reduction across the vectors of each position (at C = 16, one AVX-512
 * vector, a horizontal sum per position). The kernel alone, side by side on AMD Zen 4 (2026-12-07): with
 * AVX-512 1.99× at 256×16×28×28 and 1.29× at 256×32×14×14, but 0.92× at 256×64×7×7 and 0.80× at 40
 * channels, where the per-position reductions already run over several vectors; built for AVX2 (8 lanes)
 * 1.12× at 16 channels and 0.78× at 32. */
void NAME(ham_recombine_backward_cl)(const MAP *g, const MAP *x, const float *w1, const float *w2, const float *a,
                               int64_t batch, int64_t c, int64_t n, float *gw1, float *gw2, float *ga, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *u1 = w1 + b * c, *u2 = w2 + b * c, *p1 = a + b * 2 * n, *p2 = p1 + n;
        float *o1 = gw1 + b * c, *o2 = gw2 + b * c, *q1 = ga + b * 2 * n, *q2 = q1 + n;
        memset(o1, 0, (size_t)c * sizeof(float));
        memset(o2, 0, (size_t)c * sizeof(float));
        int64_t p0 = 0;
        if (c == VL || (LANES == 16 && c == 2 * VL)) {
            for (; p0 + VL <= n; p0 += VL) {
                float s1[VL] = {0.f}, s2[VL] = {0.f}, h[VL][VL], t[VL][VL];
                int64_t ch0 = 0;
                for (; ch0 + VL <= c; ch0 += VL) {
                    for (int64_t j = 0; j < VL; ++j) {
                        const MAP *gr = g + (b * n + p0 + j) * c + ch0, *xr = x + (b * n + p0 + j) * c + ch0;
                        const float a1 = p1[p0 + j], a2 = p2[p0 + j];
                        float *restrict oo1 = o1 + ch0, *restrict oo2 = o2 + ch0, *restrict hj = h[j];
#pragma omp simd
                        for (int64_t q = 0; q < VL; ++q) {
                            hj[q] = LD(gr[q]) * LD(xr[q]);
                            oo1[q] += hj[q] * a1;
                            oo2[q] += hj[q] * a2;
                        }
                    }
                    NAME(transpose_tile)(h, t);
                    for (int64_t q = 0; q < VL; ++q) {
                        const float v1 = u1[ch0 + q], v2 = u2[ch0 + q];
#pragma omp simd
                        for (int64_t j = 0; j < VL; ++j) {
                            s1[j] += t[q][j] * v1;
                            s2[j] += t[q][j] * v2;
                        }
                    }
                }
                for (int64_t j = 0; j < VL; ++j) {
                    const int64_t p = p0 + j;
                    if (ch0 < c)
                        NAME(recombine_backward_row)(g + (b * n + p) * c, x + (b * n + p) * c, u1, u2, p1[p], p2[p],
                                                     ch0, c, o1, o2, &s1[j], &s2[j]);
                    q1[p] = s1[j];
                    q2[p] = s2[j];
                }
            }
        }
        for (int64_t p = p0; p < n; ++p) {
            float s1 = 0.f, s2 = 0.f;
            NAME(recombine_backward_row)(g + (b * n + p) * c, x + (b * n + p) * c, u1, u2, p1[p], p2[p], 0, c, o1,
                                         o2, &s1, &s2);
            q1[p] = s1;
            q2[p] = s2;
        }
    }
}

void NAME(ham_descriptors_backward_cl)(const MAP *x, const float *gd1, const float *gd2, const int32_t *i1,
                                 const int32_t *i2, int64_t batch, int64_t c, int64_t n, float n1, float n2,
                                 float *gw1, float *gw2, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *e1 = gd1 + b * 2 * n, *f1 = e1 + n, *e2 = gd2 + b * 2 * n, *f2 = e2 + n;
        float *o1 = gw1 + b * c, *o2 = gw2 + b * c;
        memset(o1, 0, (size_t)c * sizeof(float));
        memset(o2, 0, (size_t)c * sizeof(float));
        for (int64_t p = 0; p < n; ++p) {
            const MAP *xr = x + (b * n + p) * c;
            const float q1 = e1[p], q2 = e2[p];
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) {
                o1[ch] += LD(xr[ch]) * q1;
                o2[ch] += LD(xr[ch]) * q2;
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) { o1[ch] /= n1; o2[ch] /= n2; }
        for (int64_t p = 0; p < n; ++p) {
            const MAP *xr = x + (b * n + p) * c;
            o1[i1[b * n + p]] += LD(xr[i1[b * n + p]]) * f1[p];
            o2[i2[b * n + p]] += LD(xr[i2[b * n + p]]) * f2[p];
        }
    }
}

void NAME(ham_input_backward_cl)(const MAP *g, const float *w1, const float *w2, const float *a, const float *gd1,
                           const float *gd2, const int32_t *i1, const int32_t *i2, float n1, float n2,
                           const float *gavg, const float *gmax, const int32_t *arg, int64_t batch, int64_t c,
                           int64_t n, MAP *gx, float *scratch, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        /* the sample's gradient (N, C), summed in gx itself or, for bf16, in the thread's scratch */
        float *ob = SUM_TARGET(gx + b * n * c, scratch + (int64_t)omp_get_thread_num() * n * c);
        const float *u1 = w1 + b * c, *u2 = w2 + b * c;
        const float *p1 = g ? a + b * 2 * n : 0, *p2 = g ? p1 + n : 0;
        const float *e1 = gd1 ? gd1 + b * 2 * n : 0, *f1 = gd1 ? e1 + n : 0;
        const float *e2 = gd1 ? gd2 + b * 2 * n : 0, *f2 = gd1 ? e2 + n : 0;
        const float r1 = 1.f / n1, r2 = 1.f / n2, rn = 1.f / (float)n;
        for (int64_t p = 0; p < n; ++p) {
            float *o = ob + p * c;
            const float q1 = g ? p1[p] : 0.f, q2 = g ? p2[p] : 0.f;
            const float v1 = gd1 ? e1[p] * r1 : 0.f, v2 = gd1 ? e2[p] * r2 : 0.f;
            const MAP *gr = g ? g + (b * n + p) * c : 0;
            if (g) {
#pragma omp simd
                for (int64_t ch = 0; ch < c; ++ch)
                    o[ch] = LD(gr[ch]) * (u1[ch] * q1 + u2[ch] * q2) + (u1[ch] * v1 + u2[ch] * v2)
                            + (gavg ? gavg[b * c + ch] * rn : 0.f);
            } else {
#pragma omp simd
                for (int64_t ch = 0; ch < c; ++ch)
                    o[ch] = (u1[ch] * v1 + u2[ch] * v2) + (gavg ? gavg[b * c + ch] * rn : 0.f);
            }
            if (gd1) {
                o[i1[b * n + p]] += u1[i1[b * n + p]] * f1[p];
                o[i2[b * n + p]] += u2[i2[b * n + p]] * f2[p];
            }
        }
        if (gavg)
            for (int64_t ch = 0; ch < c; ++ch) ob[arg[b * c + ch] * c + ch] += gmax[b * c + ch];
        STORE_SUM(gx + b * n * c, ob, n * c);
    }
}

/* ---- The whole module in inference (ham_kernels.c says how), for one element type of the map. ---- */

/* Step (1) for one sample: avg, mx (C); 0 if a value is not finite. */
static int NAME(eval_pool)(const MAP *xb, int64_t c, int64_t n, int cl, float *avg, float *mx) {
    if (cl) {
        for (int64_t ch = 0; ch < c; ++ch) { avg[ch] = LD(xb[ch]); mx[ch] = LD(xb[ch]); }
        for (int64_t p = 1; p < n; ++p) {
            const MAP *row = xb + p * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) {
                const float v = LD(row[ch]);
                avg[ch] += v;
                mx[ch] = v > mx[ch] ? v : mx[ch];
            }
        }
    } else {
        for (int64_t ch = 0; ch < c; ++ch) {
            NAME(row_sum_max)(xb + ch * n, n, avg + ch, mx + ch);
        }
    }
    int finite = 1;
    for (int64_t ch = 0; ch < c; ++ch) {
        finite &= isfinite(avg[ch]) != 0;
        avg[ch] /= (float)n;
    }
    return finite;
}

/* Step (7) for one sample: d (2 groups, 2, N) = [[sum_c x·w1 / n1 ; max_c x·w1] ; [… w2 …]]. */
static void NAME(eval_descriptors)(const MAP *xb, const float *w1, const float *w2, int64_t c, int64_t n, int cl,
                             float n1, float n2, float *d) {
    float *s1 = d, *m1 = d + n, *s2 = d + 2 * n, *m2 = d + 3 * n;
    if (cl) {
        for (int64_t p = 0; p < n; ++p) {
            const MAP *row = xb + p * c;
            float a = 0.f, b = 0.f, u = LD(row[0]) * w1[0], v = LD(row[0]) * w2[0];
#pragma omp simd simdlen(LANES) reduction(+ : a, b) reduction(max : u, v)
            for (int64_t ch = 0; ch < c; ++ch) {
                const float t1 = LD(row[ch]) * w1[ch], t2 = LD(row[ch]) * w2[ch];
                a += t1; b += t2;
                u = t1 > u ? t1 : u;
                v = t2 > v ? t2 : v;
            }
            s1[p] = a / n1; m1[p] = u; s2[p] = b / n2; m2[p] = v;
        }
        return;
    }
    for (int64_t p0 = 0; p0 < n; p0 += TILE) { /* the four accumulators of TILE positions stay in L1 */
        const int64_t len = n - p0 < TILE ? n - p0 : TILE;
        float *restrict a1 = s1 + p0, *restrict b1 = m1 + p0, *restrict a2 = s2 + p0, *restrict b2 = m2 + p0;
#pragma omp simd
        for (int64_t p = 0; p < len; ++p) {
            a1[p] = b1[p] = LD(xb[p0 + p]) * w1[0];
            a2[p] = b2[p] = LD(xb[p0 + p]) * w2[0];
        }
        for (int64_t ch = 1; ch < c; ++ch) {
            const MAP *restrict row = xb + ch * n + p0;
            const float u1 = w1[ch], u2 = w2[ch];
#pragma omp simd
            for (int64_t p = 0; p < len; ++p) {
                const float t1 = LD(row[p]) * u1, t2 = LD(row[p]) * u2;
                a1[p] += t1; a2[p] += t2;
                b1[p] = t1 > b1[p] ? t1 : b1[p];
                b2[p] = t2 > b2[p] ? t2 : b2[p];
            }
        }
#pragma omp simd
        for (int64_t p = 0; p < len; ++p) { a1[p] /= n1; a2[p] /= n2; }
    }
}

/* Step (10) for one sample, the maps a = [a1; a2] (2, N). */
static void NAME(eval_recombine)(const MAP *xb, const float *w1, const float *w2, const float *a, int64_t c,
                                 int64_t n, int cl, MAP *ob) {
    const float *a1 = a, *a2 = a + n;
    if (cl) {
        for (int64_t p = 0; p < n; ++p) {
            const MAP *row = xb + p * c;
            const float u = a1[p], v = a2[p];
            MAP *o = ob + p * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) o[ch] = ST(LD(row[ch]) * (w1[ch] * u + w2[ch] * v));
        }
        return;
    }
    for (int64_t ch = 0; ch < c; ++ch) {
        const MAP *row = xb + ch * n;
        const float u1 = w1[ch], u2 = w2[ch];
        MAP *o = ob + ch * n;
#pragma omp simd
        for (int64_t p = 0; p < n; ++p) o[p] = ST(LD(row[p]) * (u1 * a1[p] + u2 * a2[p]));
    }
}

/* The whole module for a batch; cw: the channel conv's ck taps; sw: the spatial conv (1, 2, k, k);
 * norm: scale1, shift1, scale2, shift2 of the two BatchNorms in eval mode. */
void NAME(ham_eval)(const MAP *x, int64_t batch, int64_t c, int64_t h, int64_t w, int cl, const float *cw, int64_t ck,
              float alpha, float beta, int adaptive, int64_t n1, const float *sw, int64_t k, const float *norm,
              MAP *out, int32_t *flags, float *scratch, int threads) {
    const int64_t n = h * w, per_thread = ham_eval_scratch(c, h, w, k);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const MAP *xb = x + b * c * n;
        float *avg = scratch + (int64_t)omp_get_thread_num() * per_thread, *mx = avg + c, *w1 = mx + c;
        float *w2 = w1 + c, *d = w2 + c, *s = d + 4 * n, *pad = s + 2 * n;
        flags[b] = !(NAME(eval_pool)(xb, c, n, cl, avg, mx) &&
                     eval_channel(avg, mx, c, cw, ck, alpha, beta, adaptive, n1, w1, w2));
        if (flags[b]) continue;
        NAME(eval_descriptors)(xb, w1, w2, c, n, cl, (float)n1, (float)(c - n1), d);
        for (int64_t g = 0; g < 2; ++g) {
            pad_planes(d + g * 2 * n, 2, h, w, k, pad);
            correlate(pad, 2, h, w, k, sw, k * k, 0, s + g * n);
            const float scale = norm[2 * g], shift = norm[2 * g + 1];
            float *restrict gate = s + g * n;
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) { /* -min(ReLU(t), 87): exp_bounded's range */
                const float t = gate[p] * scale + shift;
                gate[p] = t > 87.f ? -87.f : (t > 0.f ? -t : 0.f);
            }
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) gate[p] = 1.f / (1.f + exp_bounded(gate[p]));
        }
        NAME(eval_recombine)(xb, w1, w2, s, c, n, cl, out + b * c * n);
    }
}
