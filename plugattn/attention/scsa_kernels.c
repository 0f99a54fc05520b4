/* SCSA's passes over the feature map, fused, for maps laid out (B·C planes of H × W) or channels-last:
 * the passes over the map (and the one-pass inference kernel) in scsa_map.h, compiled here for float32
 * and for bfloat16 maps; SMSA's depthwise conv and the inference kernel's small steps here.
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

/* The pooling's gradient spread over one window row i: re[x] = gy[i, x / kw] / (kh·kw) for the covered
 * columns, 0 for the rest; rra[x] = re[x] · aw[x]. */
static void spread(const float *gy_row, const float *aw, int64_t w, int64_t wo, int64_t kw, float inv,
                   float *re, float *rra) {
    for (int64_t j = 0; j < wo; ++j)
        for (int64_t q = j * kw; q < (j + 1) * kw; ++q) re[q] = gy_row[j] * inv;
    for (int64_t x0 = wo * kw; x0 < w; ++x0) re[x0] = 0.f;
    for (int64_t x0 = 0; x0 < w; ++x0) rra[x0] = re[x0] * aw[x0];
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
#define QT 128 /* positions per tile of the weight gradient's per-position sums */

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
    /* The weight and bias gradients: the rows are short (L = H + W plus the gap), so a reduction per sample
     * and tap would cost more than its products. Per channel and tile of QT positions, each tap's products
     * are summed over the samples position by position (vector adds), then over the positions once. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t j = 0; j < c; ++j) {
        float part[k * QT], ones[QT];
        double acc_t[k], total = 0.0;
        memset(acc_t, 0, (size_t)k * sizeof(double));
        for (int64_t q0 = 0; q0 < l; q0 += QT) {
            const int64_t q1 = l - q0 < QT ? l : q0 + QT;
            memset(part, 0, sizeof part);
            memset(ones, 0, sizeof ones);
            for (int64_t n = 0; n < b; ++n) {
                const float *restrict grow = g + (n * c + j) * l, *restrict row = s + (n * c + j) * l;
                for (int64_t t = 0; t < k; ++t) {
                    const int64_t shift = t - p, lo0 = shift < 0 ? -shift : 0, hi0 = shift > 0 ? l - shift : l;
                    const int64_t lo = lo0 > q0 ? lo0 : q0, hi = hi0 < q1 ? hi0 : q1;
                    float *restrict acc = part + t * QT - q0;
#pragma omp simd
                    for (int64_t q = lo; q < hi; ++q) acc[q] += grow[q] * row[q + shift];
                }
                float *restrict sums = ones - q0;
#pragma omp simd
                for (int64_t q = q0; q < q1; ++q) sums[q] += grow[q];
            }
            for (int64_t t = 0; t < k; ++t) {
                float sum = 0.f;
#pragma omp simd reduction(+ : sum)
                for (int64_t q = 0; q < QT; ++q) sum += part[t * QT + q];
                acc_t[t] += sum;
            }
            float sum = 0.f;
#pragma omp simd reduction(+ : sum)
            for (int64_t q = 0; q < QT; ++q) sum += ones[q];
            total += sum;
        }
        for (int64_t t = 0; t < k; ++t) gwt[j * k + t] = (float)acc_t[t];
        if (gbias) gbias[j] = (float)total;
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

/* ---- The passes over the map and the inference kernel, for float32 and for bfloat16 maps (scsa_map.h). ---- */

#include "map_float32.h"
#include "scsa_map.h"
#include "map_end.h"

#include "map_bf16.h"
#include "scsa_map.h"
#include "map_end.h"
