/* HAM's passes over the feature map, fused, for float32 maps laid out (B, C, N) with N = H·W.
 *
 * Compiled on first use by plugattn/_native.py (the system C compiler, OpenMP) and called through
 * ctypes by plugattn/attention/ham_fast.py, which states the equations each function computes and
 * holds them to the pure-torch path in the tests. Nothing here allocates or keeps state: every
 * buffer is the caller's. Work is split over samples (and channels for the pooling) with OpenMP on
 * `threads` threads.
 *
 * Notation: x[b, c, p]; w1, w2: (B, C) group weights; a = [a1; a2]: (B, 2, N) spatial maps; indices int32.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "vexp.h"

/* Whole 512-bit vectors where the CPU has them: gcc's -march=native keeps to 256 bits on many AVX-512
 * CPUs. HAM's forward + backward at ResNet-20's three shapes (batch 256) took 1-7% less time with 512,
 * both layouts (the two builds side by side, Intel AVX-512, 2026-12-03); SCSA's kernels were not faster
 * so and keep the default. Without AVX-512 the option changes nothing. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif

#define TILE 512 /* positions per block of the per-position accumulators: they stay in L1 */

/* Channel pooling, paper Eq. (1): mean and max over the N positions of every (b, c) row, and the
 * first position of the max (max pooling's rule: the first of equal maxima, NaN wins). */
void ham_pool(const float *x, int64_t rows, int64_t n, float *avg, float *mx, int32_t *arg, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *row = x + r * n;
        float s = 0.f, m = row[0];
#pragma omp simd reduction(+ : s) reduction(max : m)
        for (int64_t p = 0; p < n; ++p) {
            s += row[p];
            m = row[p] > m ? row[p] : m;
        }
        int32_t at = 0;
        if (isnan(s)) { /* a NaN (or inf - inf) somewhere: find the first NaN as max pooling does */
            m = row[0];
            for (int64_t p = 0; p < n; ++p) {
                if (row[p] > m || isnan(row[p])) { m = row[p]; at = (int32_t)p; if (isnan(m)) break; }
            }
        } else {
            for (int64_t p = 0; p < n; ++p) {
                if (row[p] == m) { at = (int32_t)p; break; }
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
void ham_descriptors(const float *x, const float *w1, const float *w2, int64_t batch, int64_t c, int64_t n,
                     float n1, float n2, float *d1, float *d2, int32_t *i1, int32_t *i2, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *xb = x + b * c * n, *wb1 = w1 + b * c, *wb2 = w2 + b * c;
        float *db1 = d1 + b * 2 * n, *db2 = d2 + b * 2 * n;
        int32_t *ib1 = i1 + b * n, *ib2 = i2 + b * n;
        for (int64_t p0 = 0; p0 < n; p0 += TILE) {
            const int64_t len = n - p0 < TILE ? n - p0 : TILE;
            float s1[TILE], m1[TILE], s2[TILE], m2[TILE];
            int32_t k1[TILE], k2[TILE];
            {
                const float *row = xb + p0, u1 = wb1[0], u2 = wb2[0];
#pragma omp simd
                for (int64_t p = 0; p < len; ++p) {
                    const float t1 = row[p] * u1, t2 = row[p] * u2;
                    s1[p] = t1; m1[p] = t1; k1[p] = 0;
                    s2[p] = t2; m2[p] = t2; k2[p] = 0;
                }
            }
            for (int64_t ch = 1; ch < c; ++ch) {
                const float *row = xb + ch * n + p0, u1 = wb1[ch], u2 = wb2[ch];
                const int32_t k = (int32_t)ch;
#pragma omp simd
                for (int64_t p = 0; p < len; ++p) {
                    const float t1 = row[p] * u1, t2 = row[p] * u2, o1 = m1[p], o2 = m2[p];
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
void ham_recombine(const float *x, const float *w1, const float *w2, const float *a, int64_t batch, int64_t c, int64_t n, float *out, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t r = b * c + ch;
            const float *row = x + r * n, *p1 = a + b * 2 * n, *p2 = p1 + n, u1 = w1[r], u2 = w2[r];
            float *o = out + r * n;
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) o[p] = row[p] * (u1 * p1[p] + u2 * p2[p]);
        }
    }
}

/* Backward of the recombination's reductions, with h = g·x:
 *   gw1[b, c] = sum_p h a1,  gw2[b, c] = sum_p h a2,  ga[b, i, p] = sum_c h w_i  (ga like a: (B, 2, N)). */
void ham_recombine_backward(const float *g, const float *x, const float *w1, const float *w2, const float *a,
                            int64_t batch, int64_t c, int64_t n, float *gw1, float *gw2, float *ga, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *p1 = a + b * 2 * n, *p2 = p1 + n;
        float *q1 = ga + b * 2 * n, *q2 = q1 + n;
        memset(q1, 0, (size_t)n * sizeof(float));
        memset(q2, 0, (size_t)n * sizeof(float));
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t r = b * c + ch;
            const float *gr = g + r * n, *xr = x + r * n, u1 = w1[r], u2 = w2[r];
            float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t p = 0; p < n; ++p) {
                const float h = gr[p] * xr[p];
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
void ham_descriptors_backward(const float *x, const float *gd1, const float *gd2, const int32_t *i1, const int32_t *i2,
                              int64_t batch, int64_t c, int64_t n, float n1, float n2, float *gw1, float *gw2,
                              int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *xb = x + b * c * n, *e1 = gd1 + b * 2 * n, *f1 = e1 + n, *e2 = gd2 + b * 2 * n, *f2 = e2 + n;
        const int32_t *k1 = i1 + b * n, *k2 = i2 + b * n;
        float *o1 = gw1 + b * c, *o2 = gw2 + b * c;
        for (int64_t ch = 0; ch < c; ++ch) {
            const float *xr = xb + ch * n;
            float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t p = 0; p < n; ++p) {
                s1 += xr[p] * e1[p];
                s2 += xr[p] * e2[p];
            }
            o1[ch] = s1 / n1;
            o2[ch] = s2 / n2;
        }
        for (int64_t p = 0; p < n; ++p) {
            o1[k1[p]] += xb[(int64_t)k1[p] * n + p] * f1[p];
            o2[k2[p]] += xb[(int64_t)k2[p] * n + p] * f2[p];
        }
    }
}

/* The whole input gradient in one pass over the map:
 *   gx = g (w1 a1 + w2 a2)                        recombination (if g)
 *      + w1 e1 + w2 e2 + [c = i1] w1 f1 + [c = i2] w2 f2   descriptors (if gd1, gd2)
 *      + gavg / N + [p = arg] gmax                  channel pooling (if gavg)
 * with e_i, f_i as in ham_descriptors_backward. A NULL g, gd1 (then gd2 too) or gavg leaves its terms out. */
void ham_input_backward(const float *g, const float *w1, const float *w2, const float *a, const float *gd1,
                        const float *gd2, const int32_t *i1, const int32_t *i2, float n1, float n2,
                        const float *gavg, const float *gmax, const int32_t *arg, int64_t batch, int64_t c,
                        int64_t n, float *gx, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const int gd = gd1 != 0;
        const float *p1 = g ? a + b * 2 * n : 0, *p2 = g ? p1 + n : 0;
        const float *e1 = gd ? gd1 + b * 2 * n : 0, *f1 = gd ? e1 + n : 0;
        const float *e2 = gd ? gd2 + b * 2 * n : 0, *f2 = gd ? e2 + n : 0;
        const float r1 = 1.f / n1, r2 = 1.f / n2;
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t r = b * c + ch;
            const float u1 = w1[r], u2 = w2[r], v1 = u1 * r1, v2 = u2 * r2;
            const float base = gavg ? gavg[r] / (float)n : 0.f;
            float *o = gx + r * n;
            if (g && gd) {
                const float *gr = g + r * n;
#pragma omp simd
                for (int64_t p = 0; p < n; ++p)
                    o[p] = gr[p] * (u1 * p1[p] + u2 * p2[p]) + (v1 * e1[p] + v2 * e2[p]) + base;
            } else if (g) {
                const float *gr = g + r * n;
#pragma omp simd
                for (int64_t p = 0; p < n; ++p) o[p] = gr[p] * (u1 * p1[p] + u2 * p2[p]) + base;
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
            float *ob = gx + b * c * n;
            for (int64_t p = 0; p < n; ++p) {
                ob[(int64_t)k1[p] * n + p] += wb1[k1[p]] * f1[p];
                ob[(int64_t)k2[p] * n + p] += wb2[k2[p]] * f2[p];
            }
        }
    }
}

/* The shared spatial conv, Eq. (8), on both groups at once: a 2→1-channel k×k convolution with zero
 * padding k/2 and no bias, of the descriptors d1, d2 (B, 2, H, W) into s (2, B, H, W) (group, sample).
 * An image is copied into a zero-bordered buffer whose rows are padded to whole vectors, so that the
 * inner loops run over VL positions at a time without bounds tests, the VL sums held in registers. */
#define VL 16

static int64_t padded_width(int64_t w, int64_t k) { return (w + 2 * VL - 1) / (2 * VL) * (2 * VL) + k - 1; }

#define ROWS 4 /* output rows computed together: independent sums that hide the FMA latency */
#define KB 8    /* kernel columns whose weight-gradient sums are kept together */

/* Copy `channels` planes (h, w) into pad (channels, h + k - 1 + ROWS, padded_width), zero elsewhere
 * (ROWS spare zero rows let the last block of output rows read past the image). */
static int64_t pad_rows(int64_t h, int64_t k) { return h + k - 1 + ROWS; }

static void pad_planes(const float *in, int64_t channels, int64_t h, int64_t w, int64_t k, float *pad) {
    const int64_t r = k / 2, pw = padded_width(w, k), ph = pad_rows(h, k);
    memset(pad, 0, (size_t)(channels * ph * pw) * sizeof(float));
    for (int64_t ci = 0; ci < channels; ++ci)
        for (int64_t y = 0; y < h; ++y)
            memcpy(pad + (ci * ph + y + r) * pw + r, in + (ci * h + y) * w, (size_t)w * sizeof(float));
}

/* out[y, x] = sum_{ci, ky, kx} weight(ci, ky, kx) · pad[ci][y + ky, x + kx], for one output plane; `flip`
 * turns the kernel by 180° (the input gradient). ROWS rows × VL columns of sums at a time. */
static void correlate_narrow(const float *restrict pad, int64_t channels, int64_t h, int64_t w, int64_t k,
                             const float *restrict weight, int64_t ci_stride, int flip, float *restrict out);

static void correlate(const float *restrict pad, int64_t channels, int64_t h, int64_t w, int64_t k,
                      const float *restrict weight, int64_t ci_stride, int flip, float *restrict out) {
    const int64_t pw = padded_width(w, k), ph = pad_rows(h, k);
    if (w <= VL) {
        correlate_narrow(pad, channels, h, w, k, weight, ci_stride, flip, out);
        return;
    }
    for (int64_t y0 = 0; y0 < h; y0 += ROWS)
        for (int64_t x0 = 0; x0 < w; x0 += 2 * VL) { /* two vectors of columns: 2·ROWS independent sums */
            float acc[ROWS][2 * VL] = {{0}};
            for (int64_t ci = 0; ci < channels; ++ci)
                for (int64_t ky = 0; ky < k; ++ky)
                    for (int64_t kx = 0; kx < k; ++kx) {
                        const float u = flip ? weight[ci * ci_stride + (k - 1 - ky) * k + (k - 1 - kx)]
                                             : weight[ci * ci_stride + ky * k + kx];
                        const float *src = pad + (ci * ph + y0 + ky) * pw + x0 + kx;
                        for (int64_t rr = 0; rr < ROWS; ++rr) {
#pragma omp simd
                            for (int64_t j = 0; j < 2 * VL; ++j) acc[rr][j] += u * src[rr * pw + j];
                        }
                    }
            const int64_t len = w - x0 < 2 * VL ? w - x0 : 2 * VL;
            for (int64_t rr = 0; rr < ROWS && y0 + rr < h; ++rr)
                for (int64_t j = 0; j < len; ++j) out[(y0 + rr) * w + x0 + j] = acc[rr][j];
        }
}

/* correlate for images at most VL wide (8×8, 14×14, 7×7 maps): one vector of columns, so twice the rows at a
 * time keep as many independent sums, where two vectors would compute more padding than image. */
static void correlate_narrow(const float *restrict pad, int64_t channels, int64_t h, int64_t w, int64_t k,
                             const float *restrict weight, int64_t ci_stride, int flip, float *restrict out) {
    const int64_t pw = padded_width(w, k), ph = pad_rows(h, k);
    for (int64_t y0 = 0; y0 < h; y0 += ROWS) {
        float acc[ROWS][VL] = {{0}};
        for (int64_t ci = 0; ci < channels; ++ci)
            for (int64_t ky = 0; ky < k; ++ky)
                for (int64_t kx = 0; kx < k; ++kx) {
                    const float u = flip ? weight[ci * ci_stride + (k - 1 - ky) * k + (k - 1 - kx)]
                                         : weight[ci * ci_stride + ky * k + kx];
                    const float *src = pad + (ci * ph + y0 + ky) * pw + kx;
                    for (int64_t rr = 0; rr < ROWS; ++rr) {
#pragma omp simd
                        for (int64_t j = 0; j < VL; ++j) acc[rr][j] += u * src[rr * pw + j];
                    }
                }
        for (int64_t rr = 0; rr < ROWS && y0 + rr < h; ++rr)
            for (int64_t j = 0; j < w; ++j) out[(y0 + rr) * w + j] = acc[rr][j];
    }
}

static int64_t pad_size(int64_t h, int64_t w, int64_t k) { return 2 * pad_rows(h, k) * padded_width(w, k); }

static int64_t vector_width(int64_t w) { return (w + VL - 1) / VL * VL; }

int64_t ham_spatial_conv_scratch(int64_t h, int64_t w, int64_t k) {
    return pad_size(h, w, k) + h * vector_width(w) + 2 * k * k;
}

void ham_spatial_conv(const float *d1, const float *d2, const float *weight, int64_t batch, int64_t h, int64_t w,
                      int64_t k, float *s, float *scratch, int threads) {
    const int64_t per_thread = ham_spatial_conv_scratch(h, w, k);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < 2 * batch; ++i) {
        const float *in = (i < batch ? d1 + i * 2 * h * w : d2 + (i - batch) * 2 * h * w);
        float *pad = scratch + (int64_t)omp_get_thread_num() * per_thread;
        pad_planes(in, 2, h, w, k, pad);
        correlate(pad, 2, h, w, k, weight, k * k, 0, s + i * h * w);
    }
}

/* Its backward: gd_i[ci] = gs correlated with the kernel of input channel ci turned by 180°, and
 * gweight[ci, ky, kx] = sum over both groups, samples and positions of gs[y, x] · d[ci][y + ky - r, x + kx - r].
 * scratch: ham_spatial_conv_scratch(h, w, k) floats per thread. gweight is overwritten. */
void ham_spatial_conv_backward(const float *d1, const float *d2, const float *weight, const float *gs, int64_t batch,
                               int64_t h, int64_t w, int64_t k, float *gd1, float *gd2, float *gweight,
                               float *scratch, int threads) {
    const int64_t pw = padded_width(w, k), ph = pad_rows(h, k), kk = k * k;
    const int64_t per_thread = ham_spatial_conv_scratch(h, w, k);
    memset(gweight, 0, (size_t)(2 * kk) * sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        const int64_t vw = vector_width(w);
        float *pad = scratch + (int64_t)omp_get_thread_num() * per_thread, *grow = pad + pad_size(h, w, k);
        float *acc = grow + h * vw;
        memset(acc, 0, (size_t)(2 * kk) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t i = 0; i < 2 * batch; ++i) {
            const float *in = (i < batch ? d1 + i * 2 * h * w : d2 + (i - batch) * 2 * h * w);
            float *gin = (i < batch ? gd1 + i * 2 * h * w : gd2 + (i - batch) * 2 * h * w);
            const float *go = gs + i * h * w;
            /* weight gradient: the padded input against gs (its rows padded with zeros to whole vectors),
             * VL sums per tap reduced at the end */
            pad_planes(in, 2, h, w, k, pad);
            memset(grow, 0, (size_t)(h * vw) * sizeof(float));
            for (int64_t y = 0; y < h; ++y) memcpy(grow + y * vw, go + y * w, (size_t)w * sizeof(float));
            for (int64_t ci = 0; ci < 2; ++ci)
                for (int64_t ky = 0; ky < k; ++ky)
                    for (int64_t kx0 = 0; kx0 < k; kx0 += KB) {
                        const int64_t nk = k - kx0 < KB ? k - kx0 : KB;
                        float part[KB][VL] = {{0}};
                        for (int64_t y = 0; y < h; ++y) {
                            const float *src = pad + (ci * ph + y + ky) * pw + kx0, *g = grow + y * vw;
                            for (int64_t x0 = 0; x0 < vw; x0 += VL)
                                for (int64_t q = 0; q < KB; ++q) {
#pragma omp simd
                                    for (int64_t j = 0; j < VL; ++j) part[q][j] += g[x0 + j] * src[x0 + q + j];
                                }
                        }
                        for (int64_t q = 0; q < nk; ++q) {
                            float sum = 0.f;
                            for (int64_t j = 0; j < VL; ++j) sum += part[q][j];
                            acc[(ci * k + ky) * k + kx0 + q] += sum;
                        }
                    }
            /* input gradient: gs padded (one plane), correlated with each input channel's turned kernel */
            pad_planes(go, 1, h, w, k, pad);
            for (int64_t ci = 0; ci < 2; ++ci) correlate(pad, 1, h, w, k, weight + ci * kk, kk, 1, gin + ci * h * w);
        }
#pragma omp critical
        for (int64_t j = 0; j < 2 * kk; ++j) gweight[j] += acc[j];
    }
}

/* ---- The same passes for maps in the channels-last layout: x[b, p, c] at (b·N + p)·C + c. ----
 * The descriptors, maps and their gradients keep the planar layouts above ((B, 2, N), (B, N)); only
 * the map-sized tensors x, g, out and gx are channels-last. */

void ham_pool_cl(const float *x, int64_t batch, int64_t n, int64_t c, float *avg, float *mx, int32_t *arg,
                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *xb = x + b * n * c;
        float *s = avg + b * c, *m = mx + b * c;
        int32_t *a = arg + b * c;
        for (int64_t ch = 0; ch < c; ++ch) { s[ch] = xb[ch]; m[ch] = xb[ch]; a[ch] = 0; }
        for (int64_t p = 1; p < n; ++p) {
            const float *row = xb + p * c;
            const int32_t q = (int32_t)p;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) {
                const float v = row[ch], old = m[ch];
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

/* Descriptors: per position the sums and the first arg-max over the C channels of one row, for VL
 * positions at a time (strided loads across rows, the VL lanes kept in registers). */
void ham_descriptors_cl(const float *x, const float *w1, const float *w2, int64_t batch, int64_t c, int64_t n,
                        float n1, float n2, float *d1, float *d2, int32_t *i1, int32_t *i2, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t p0 = 0; p0 < n; p0 += VL) {
            const float *xb = x + b * n * c, *wb1 = w1 + b * c, *wb2 = w2 + b * c;
            const int64_t len = n - p0 < VL ? n - p0 : VL;
            float s1[VL], m1[VL], s2[VL], m2[VL];
            int32_t k1[VL], k2[VL];
            for (int64_t j = 0; j < VL; ++j) {
                const float v = j < len ? xb[(p0 + j) * c] : 0.f;
                s1[j] = m1[j] = v * wb1[0]; s2[j] = m2[j] = v * wb2[0]; k1[j] = k2[j] = 0;
            }
            for (int64_t ch = 1; ch < c; ++ch) {
                const float u1 = wb1[ch], u2 = wb2[ch];
                const int32_t k = (int32_t)ch;
                const float *col = xb + p0 * c + ch;
                if (len == VL) {
#pragma omp simd
                    for (int64_t j = 0; j < VL; ++j) {
                        const float v = col[j * c], t1 = v * u1, t2 = v * u2, o1 = m1[j], o2 = m2[j];
                        /* the index blended bitwise: see ham_descriptors */
                        const int32_t g1 = -(int32_t)(t1 > o1), g2 = -(int32_t)(t2 > o2);
                        s1[j] += t1; s2[j] += t2;
                        m1[j] = t1 > o1 ? t1 : o1; k1[j] = (k & g1) | (k1[j] & ~g1);
                        m2[j] = t2 > o2 ? t2 : o2; k2[j] = (k & g2) | (k2[j] & ~g2);
                    }
                } else {
                    for (int64_t j = 0; j < len; ++j) {
                        const float v = col[j * c], t1 = v * u1, t2 = v * u2, o1 = m1[j], o2 = m2[j];
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

void ham_recombine_cl(const float *x, const float *w1, const float *w2, const float *a, int64_t batch, int64_t c,
                      int64_t n, float *out, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t p = 0; p < n; ++p) {
            const float *row = x + (b * n + p) * c, *u1 = w1 + b * c, *u2 = w2 + b * c;
            const float q1 = a[b * 2 * n + p], q2 = a[b * 2 * n + n + p];
            float *o = out + (b * n + p) * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) o[ch] = row[ch] * (u1[ch] * q1 + u2[ch] * q2);
        }
    }
}

void ham_recombine_backward_cl(const float *g, const float *x, const float *w1, const float *w2, const float *a,
                               int64_t batch, int64_t c, int64_t n, float *gw1, float *gw2, float *ga, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *u1 = w1 + b * c, *u2 = w2 + b * c, *p1 = a + b * 2 * n, *p2 = p1 + n;
        float *o1 = gw1 + b * c, *o2 = gw2 + b * c, *q1 = ga + b * 2 * n, *q2 = q1 + n;
        memset(o1, 0, (size_t)c * sizeof(float));
        memset(o2, 0, (size_t)c * sizeof(float));
        for (int64_t p = 0; p < n; ++p) {
            const float *gr = g + (b * n + p) * c, *xr = x + (b * n + p) * c, a1 = p1[p], a2 = p2[p];
            float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t ch = 0; ch < c; ++ch) {
                const float h = gr[ch] * xr[ch];
                o1[ch] += h * a1;
                o2[ch] += h * a2;
                s1 += h * u1[ch];
                s2 += h * u2[ch];
            }
            q1[p] = s1;
            q2[p] = s2;
        }
    }
}

void ham_descriptors_backward_cl(const float *x, const float *gd1, const float *gd2, const int32_t *i1,
                                 const int32_t *i2, int64_t batch, int64_t c, int64_t n, float n1, float n2,
                                 float *gw1, float *gw2, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *e1 = gd1 + b * 2 * n, *f1 = e1 + n, *e2 = gd2 + b * 2 * n, *f2 = e2 + n;
        float *o1 = gw1 + b * c, *o2 = gw2 + b * c;
        memset(o1, 0, (size_t)c * sizeof(float));
        memset(o2, 0, (size_t)c * sizeof(float));
        for (int64_t p = 0; p < n; ++p) {
            const float *xr = x + (b * n + p) * c, q1 = e1[p], q2 = e2[p];
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) {
                o1[ch] += xr[ch] * q1;
                o2[ch] += xr[ch] * q2;
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) { o1[ch] /= n1; o2[ch] /= n2; }
        for (int64_t p = 0; p < n; ++p) {
            const float *xr = x + (b * n + p) * c;
            o1[i1[b * n + p]] += xr[i1[b * n + p]] * f1[p];
            o2[i2[b * n + p]] += xr[i2[b * n + p]] * f2[p];
        }
    }
}

void ham_input_backward_cl(const float *g, const float *w1, const float *w2, const float *a, const float *gd1,
                           const float *gd2, const int32_t *i1, const int32_t *i2, float n1, float n2,
                           const float *gavg, const float *gmax, const int32_t *arg, int64_t batch, int64_t c,
                           int64_t n, float *gx, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *u1 = w1 + b * c, *u2 = w2 + b * c;
        const float *p1 = g ? a + b * 2 * n : 0, *p2 = g ? p1 + n : 0;
        const float *e1 = gd1 ? gd1 + b * 2 * n : 0, *f1 = gd1 ? e1 + n : 0;
        const float *e2 = gd1 ? gd2 + b * 2 * n : 0, *f2 = gd1 ? e2 + n : 0;
        const float r1 = 1.f / n1, r2 = 1.f / n2, rn = 1.f / (float)n;
        for (int64_t p = 0; p < n; ++p) {
            float *o = gx + (b * n + p) * c;
            const float q1 = g ? p1[p] : 0.f, q2 = g ? p2[p] : 0.f;
            const float v1 = gd1 ? e1[p] * r1 : 0.f, v2 = gd1 ? e2[p] * r2 : 0.f;
            const float *gr = g ? g + (b * n + p) * c : 0;
            if (g) {
#pragma omp simd
                for (int64_t ch = 0; ch < c; ++ch)
                    o[ch] = gr[ch] * (u1[ch] * q1 + u2[ch] * q2) + (u1[ch] * v1 + u2[ch] * v2)
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
            for (int64_t ch = 0; ch < c; ++ch) gx[(b * n + arg[b * c + ch]) * c + ch] += gmax[b * c + ch];
    }
}

/* ---- The whole module in inference, one sample at a time (its map stays in cache between steps). ----
 * For eval-mode HAM (BatchNorm with running statistics: an affine map per group), each sample's steps
 * (1)-(10) run back to back, so the map is read from memory once and written once:
 *   (1)-(3) pooling as ham_pool, f_add = ½(avg + max) [+ α avg + β max], the channel conv (zero
 *           padding, taps in order), a_c = 1 / (1 + e^{-conv});
 *   (5)-(6) the n1 largest a_c are the important group: w1 = a_c where important else 0, w2 = a_c - w1;
 *   (7)-(9) the descriptors as ham_descriptors, the spatial conv as ham_spatial_conv, then per group
 *           a_i = σ(ReLU(scale_i · s_i + shift_i)), the exp as exp_bounded (e^-t for t > 87 as e^-87:
 *           σ is 1 in float32 either way);
 *   (10)    out = x · (w1 ⊗ a1 + w2 ⊗ a2).
 * A sample is not computed and flags[b] = 1 when its map has a value that is not finite, or when the
 * n1-th and (n1+1)-th largest a_c are within a relative 1e-6 of each other (a tie at the groups' border,
 * which torch.topk breaks in an order of its own): the caller computes those samples step by step.
 * `cl`: x and out in the channels-last layout. scratch: ham_eval_scratch(c, h, w, k) floats per thread. */

int64_t ham_eval_scratch(int64_t c, int64_t h, int64_t w, int64_t k) {
    return 4 * c + 6 * h * w + pad_size(h, w, k);
}

/* The k-th largest of v[0..n-1] (k >= 1), reordering v so that v[0..k-2] >= v[k-1] >= v[k..n-1]. */
static float kth_largest(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    const int64_t target = k - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) ++i;
            while (v[j] < pivot) --j;
            if (i <= j) { const float t = v[i]; v[i] = v[j]; v[j] = t; ++i; --j; }
        }
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else break;
    }
    return v[target];
}

/* Steps (1)-(6) for one sample from its pooled avg, mx (C): w1, w2; 0 if the border is a near-tie. */
static int eval_channel(float *avg, float *mx, int64_t c, const float *cw, int64_t ck, float alpha, float beta,
                        int adaptive, int64_t n1, float *w1, float *w2) {
    float *f = w2, *sorted = mx; /* f reuses w2; the sort reuses mx once f is built */
    for (int64_t ch = 0; ch < c; ++ch) {
        f[ch] = 0.5f * (avg[ch] + mx[ch]);
        if (adaptive) f[ch] = f[ch] + alpha * avg[ch] + beta * mx[ch];
    }
    const int64_t r = ck / 2;
    for (int64_t ch = 0; ch < c; ++ch) {
        float s = 0.f;
        for (int64_t j = 0; j < ck; ++j) {
            const int64_t at = ch + j - r;
            s = j == 0 ? (at >= 0 && at < c ? f[at] : 0.f) * cw[0] : s + (at >= 0 && at < c ? f[at] : 0.f) * cw[j];
        }
        avg[ch] = 1.f / (1.f + expf(-s)); /* a_c */
    }
    memcpy(sorted, avg, (size_t)c * sizeof(float));
    const float border = kth_largest(sorted, c, n1);
    float next = -INFINITY;
    for (int64_t ch = n1; ch < c; ++ch) next = sorted[ch] > next ? sorted[ch] : next;
    if (border - next <= 1e-6f * fabsf(border)) return 0;
    for (int64_t ch = 0; ch < c; ++ch) {
        w1[ch] = avg[ch] * (avg[ch] >= border ? 1.f : 0.f);
        w2[ch] = avg[ch] - w1[ch];
    }
    return 1;
}

/* Step (1) for one sample: avg, mx (C); 0 if a value is not finite. */
static int eval_pool(const float *xb, int64_t c, int64_t n, int cl, float *avg, float *mx) {
    if (cl) {
        for (int64_t ch = 0; ch < c; ++ch) { avg[ch] = xb[ch]; mx[ch] = xb[ch]; }
        for (int64_t p = 1; p < n; ++p) {
            const float *row = xb + p * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) {
                avg[ch] += row[ch];
                mx[ch] = row[ch] > mx[ch] ? row[ch] : mx[ch];
            }
        }
    } else {
        for (int64_t ch = 0; ch < c; ++ch) {
            const float *row = xb + ch * n;
            float s = 0.f, m = row[0];
#pragma omp simd reduction(+ : s) reduction(max : m)
            for (int64_t p = 0; p < n; ++p) {
                s += row[p];
                m = row[p] > m ? row[p] : m;
            }
            avg[ch] = s;
            mx[ch] = m;
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
static void eval_descriptors(const float *xb, const float *w1, const float *w2, int64_t c, int64_t n, int cl,
                             float n1, float n2, float *d) {
    float *s1 = d, *m1 = d + n, *s2 = d + 2 * n, *m2 = d + 3 * n;
    if (cl) {
        for (int64_t p = 0; p < n; ++p) {
            const float *row = xb + p * c;
            float a = 0.f, b = 0.f, u = row[0] * w1[0], v = row[0] * w2[0];
#pragma omp simd reduction(+ : a, b) reduction(max : u, v)
            for (int64_t ch = 0; ch < c; ++ch) {
                const float t1 = row[ch] * w1[ch], t2 = row[ch] * w2[ch];
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
            a1[p] = b1[p] = xb[p0 + p] * w1[0];
            a2[p] = b2[p] = xb[p0 + p] * w2[0];
        }
        for (int64_t ch = 1; ch < c; ++ch) {
            const float *restrict row = xb + ch * n + p0, u1 = w1[ch], u2 = w2[ch];
#pragma omp simd
            for (int64_t p = 0; p < len; ++p) {
                const float t1 = row[p] * u1, t2 = row[p] * u2;
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
static void eval_recombine(const float *xb, const float *w1, const float *w2, const float *a, int64_t c, int64_t n,
                           int cl, float *ob) {
    const float *a1 = a, *a2 = a + n;
    if (cl) {
        for (int64_t p = 0; p < n; ++p) {
            const float *row = xb + p * c, u = a1[p], v = a2[p];
            float *o = ob + p * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) o[ch] = row[ch] * (w1[ch] * u + w2[ch] * v);
        }
        return;
    }
    for (int64_t ch = 0; ch < c; ++ch) {
        const float *row = xb + ch * n, u1 = w1[ch], u2 = w2[ch];
        float *o = ob + ch * n;
#pragma omp simd
        for (int64_t p = 0; p < n; ++p) o[p] = row[p] * (u1 * a1[p] + u2 * a2[p]);
    }
}

/* The whole module for a batch; cw: the channel conv's ck taps; sw: the spatial conv (1, 2, k, k);
 * norm: scale1, shift1, scale2, shift2 of the two BatchNorms in eval mode. */
void ham_eval(const float *x, int64_t batch, int64_t c, int64_t h, int64_t w, int cl, const float *cw, int64_t ck,
              float alpha, float beta, int adaptive, int64_t n1, const float *sw, int64_t k, const float *norm,
              float *out, int32_t *flags, float *scratch, int threads) {
    const int64_t n = h * w, per_thread = ham_eval_scratch(c, h, w, k);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        const float *xb = x + b * c * n;
        float *avg = scratch + (int64_t)omp_get_thread_num() * per_thread, *mx = avg + c, *w1 = mx + c;
        float *w2 = w1 + c, *d = w2 + c, *s = d + 4 * n, *pad = s + 2 * n;
        flags[b] = !(eval_pool(xb, c, n, cl, avg, mx) &&
                     eval_channel(avg, mx, c, cw, ck, alpha, beta, adaptive, n1, w1, w2));
        if (flags[b]) continue;
        eval_descriptors(xb, w1, w2, c, n, cl, (float)n1, (float)(c - n1), d);
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
        eval_recombine(xb, w1, w2, s, c, n, cl, out + b * c * n);
    }
}
