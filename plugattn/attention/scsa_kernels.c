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

/* tot[j] ← the sum of v over the channels of j's group, for the 4 groups of C/4 channels. */
static void group_totals(const float *v, int64_t c, float *tot) {
    const int64_t g = c / 4;
    for (int64_t grp = 0; grp < 4; ++grp) {
        float t = 0.f;
        for (int64_t j = grp * g; j < (grp + 1) * g; ++j) t += v[j];
        for (int64_t j = grp * g; j < (grp + 1) * g; ++j) tot[j] = t;
    }
}

/* o (n, C) ← bias + the depthwise conv of the means m (n, C) with wt (k, C), zero padding (k − 1) / 2:
 * step (2) for one direction, every inner loop over the channels. */
static void dwconv_rows(const float *m, int64_t c, int64_t n, const float *wt, const float *restrict bias, int64_t k,
                        float *o_rows) {
    const int64_t p = (k - 1) / 2;
    for (int64_t q = 0; q < n; ++q) {
        float *restrict o = o_rows + q * c;
        memcpy(o, bias, (size_t)c * sizeof(float));
        for (int64_t t = 0; t < k; ++t) {
            const int64_t src = q + t - p;
            if (src < 0 || src >= n) continue;
            const float *restrict kern = wt + t * c, *restrict row = m + src * c;
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) o[j] += kern[j] * row[j];
        }
    }
}

/* (2)-(3) for one direction: a (n, C) from the means m (n, C); wt (k, C); tmp n·C floats; stats: NULL, or
 * 8 floats for each group's mean and 1/std (mean, rstd, mean, rstd, ...), which the training path keeps. */
static void spatial_gate(const float *m, int64_t c, int64_t n, const float *wt, const float *restrict bias,
                         int64_t k, const float *restrict gw, const float *restrict gb, float eps, float *a,
                         float *tmp, float *stats) {
    const int64_t g = c / 4;
    dwconv_rows(m, c, n, wt, bias, k, a);
    /* The groups' moments in two passes, each summing per channel over the positions (loops over the C
     * channels: a group's C/4 channels are as few as 4) and then over each group's channels. */
    float mean[c], scale[c], acc[c];
    const float count = (float)(n * g);
    memset(acc, 0, (size_t)c * sizeof(float));
    for (int64_t q = 0; q < n; ++q) {
        const float *restrict o = a + q * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) acc[j] += o[j];
    }
    group_totals(acc, c, mean);
    for (int64_t j = 0; j < c; ++j) mean[j] /= count;
    memset(acc, 0, (size_t)c * sizeof(float));
    for (int64_t q = 0; q < n; ++q) {
        const float *restrict o = a + q * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) acc[j] += (o[j] - mean[j]) * (o[j] - mean[j]);
    }
    group_totals(acc, c, scale);
    for (int64_t grp = 0; grp < 4; ++grp) {
        const float rstd = 1.f / sqrtf(scale[grp * g] / count + eps);
        if (stats) {
            stats[2 * grp] = mean[grp * g];
            stats[2 * grp + 1] = rstd;
        }
        for (int64_t j = grp * g; j < (grp + 1) * g; ++j) scale[j] = rstd * gw[j];
    }
    for (int64_t q = 0; q < n; ++q) {
        float *restrict o = a + q * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) o[j] = (o[j] - mean[j]) * scale[j] + gb[j];
    }
    sigmoid_bounded(a, tmp, n * c);
}

/* (6)-(9) for one sample: ac (C) from the pooled y (N, C), overwritten by q; qc (C, N) q transposed, k (N, C),
 * v, l: C floats each. keep: NULL, or 2 + 2 C floats for the training path's backward: GN_1's mean and
 * 1/std, then o (C) and each row's log Σ exp (C). */
static void channel_gate(float *y, int64_t c, int64_t n, const float *par, float eps, int64_t heads, float s,
                         float *qc, float *k, float *restrict v, float *l, float *ac, float *keep) {
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
        if (keep) {
            keep[2 + j] = ac[j];
            keep[2 + c + j] = top + logf(z);
        }
    }
    if (keep) {
        keep[0] = mu;
        keep[1] = rstd;
    }
    sigmoid_bounded(ac, l, c);
}

/* 0 if any of the n values is not finite (0 · v is 0 for finite v, NaN for ±inf and NaN). */
static int all_finite(const float *v, int64_t n) {
    float bad = 0.f;
#pragma omp simd reduction(+ : bad)
    for (int64_t i = 0; i < n; ++i) bad += 0.f * v[i];
    return bad == 0.f;
}

/* ------------------------------------------------------------------------------------------------------
 * SMSA's gates on the training path (scsa_smsa and its backward): steps (2)-(3) for both directions, one
 * sample at a time on the (positions, C) arrays of the inference kernel, instead of a torch operation per
 * step (the concatenation, the conv, two GroupNorms and two sigmoids, and their backward took 2-5 ms a
 * block at batch 256 on the 7-32-long sequences of a CIFAR ResNet). The sequences xh (B, H) and xw (B, W)
 * of C channels are laid out (B, n, C) if cl, else (B, C, n); the gates ah, aw and the gradients likewise.
 * wt (k, C): the SMSA kernel transposed; bias (C); gn (4 C): GN_h's weight and bias, then GN_w's; eps: GN_h's
 * and GN_w's epsilon; stats (B, 2, 8): each direction's four groups' mean and 1/std, for the backward.
 * scratch: scsa_smsa_scratch(c, h, w, k) floats per thread.
 * ------------------------------------------------------------------------------------------------------ */

int64_t scsa_smsa_scratch(int64_t c, int64_t h, int64_t w, int64_t k) {
    const int64_t n = h > w ? h : w, sums = (k + 5) * c;
    return (3 * sums + 6 * n * c + 15) / 16 * 16; /* the backward's: a thread's doubles stay 64-byte aligned */
}

/* One sample's sequence as an (n, C) array: seq itself if cl, else transposed into buf. */
static const float *rows_of(const float *seq, int64_t c, int64_t n, int cl, float *buf) {
    if (cl) return seq;
    for (int64_t j = 0; j < c; ++j)
        for (int64_t q = 0; q < n; ++q) buf[q * c + j] = seq[j * n + q];
    return buf;
}

/* The (n, C) array v stored at dst in the sequences' layout (rows_of's inverse). */
static void store_rows(const float *v, int64_t c, int64_t n, int cl, float *dst) {
    if (cl) {
        memcpy(dst, v, (size_t)(n * c) * sizeof(float));
        return;
    }
    for (int64_t j = 0; j < c; ++j)
        for (int64_t q = 0; q < n; ++q) dst[j * n + q] = v[q * c + j];
}

void scsa_smsa(const float *xh, const float *xw, int64_t b, int64_t c, int64_t h, int64_t w, int cl, const float *wt,
               const float *bias, int64_t k, const float *gn, const float *eps, float *ah, float *aw, float *stats,
               float *scratch, int threads) {
    const int64_t per_thread = scsa_smsa_scratch(c, h, w, k), nmax = h > w ? h : w;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < b; ++i) {
        float *m = scratch + (int64_t)omp_get_thread_num() * per_thread, *a = m + nmax * c, *tmp = a + nmax * c;
        for (int64_t d = 0; d < 2; ++d) {
            const int64_t n = d ? w : h;
            const float *seq = rows_of((d ? xw : xh) + i * n * c, c, n, cl, m);
            const float *gamma = gn + 2 * d * c, *beta = gamma + c;
            spatial_gate(seq, c, n, wt, bias, k, gamma, beta, eps[d], a, tmp, stats + (i * 2 + d) * 8);
            store_rows(a, c, n, cl, (d ? aw : ah) + i * n * c);
        }
    }
}

/* The backward of one direction of one sample, from ga = ∂L/∂a (n, C), with s = dwconv(m) + bias recomputed,
 * ŝ = (s − μ)·r its normalisation (μ, r the group's mean and 1/std), z = ŝ·γ + β, a = σ(z):
 *   ∂z = ga·a·(1 − a),  ∂γ += Σ ∂z·ŝ,  ∂β += Σ ∂z,  gy = ∂z·γ,
 *   ∂s = r·(gy − mean_group(gy) − ŝ·mean_group(gy·ŝ)),
 *   ∂bias += Σ ∂s,  ∂wt[t] += Σ_q ∂s[q]·m[q + t − p],  gm[q + t − p] += wt[t]·∂s[q].
 * part: this sample's sums for wt (k, C) and bias (C); pn: those for this direction's γ and β (C each); s,
 * gy, gm: n·C floats each. */
static void smsa_direction_backward(const float *m, const float *a, const float *ga, int64_t c, int64_t n,
                                    const float *wt, const float *restrict bias, int64_t k, const float *restrict gamma,
                                    const float *st, float *part, float *pn, float *restrict s,
                                    float *restrict gy, float *restrict gm) {
    const int64_t p = (k - 1) / 2, g = c / 4;
    dwconv_rows(m, c, n, wt, bias, k, s);
    float mu[c], r[c], s1[c], s2[c];
    for (int64_t j = 0; j < c; ++j) {
        mu[j] = st[2 * (j / g)];
        r[j] = st[2 * (j / g) + 1];
        s1[j] = s2[j] = 0.f;
    }
    float *restrict pg = pn, *restrict pb = pn + c;
    for (int64_t q = 0; q < n; ++q) {
        const float *restrict aq = a + q * c, *restrict gq = ga + q * c;
        float *restrict sq = s + q * c, *restrict yq = gy + q * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
            const float sh = (sq[j] - mu[j]) * r[j], dz = gq[j] * aq[j] * (1.f - aq[j]);
            pg[j] += dz * sh;
            pb[j] += dz;
            yq[j] = dz * gamma[j];
            sq[j] = sh;
            s1[j] += yq[j];
            s2[j] += yq[j] * sh;
        }
    }
    float m1[c], m2[c];  /* the groups' means of gy and of gy·ŝ */
    group_totals(s1, c, m1);
    group_totals(s2, c, m2);
    for (int64_t j = 0; j < c; ++j) {
        m1[j] /= (float)(n * g);
        m2[j] /= (float)(n * g);
    }
    float *restrict pbias = part + k * c;
    memset(gm, 0, (size_t)(n * c) * sizeof(float));
    for (int64_t q = 0; q < n; ++q) {
        const float *restrict sq = s + q * c;
        float *restrict yq = gy + q * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
            yq[j] = r[j] * (yq[j] - m1[j] - sq[j] * m2[j]);  /* ∂s */
            pbias[j] += yq[j];
        }
        for (int64_t t = 0; t < k; ++t) {
            const int64_t src = q + t - p;
            if (src < 0 || src >= n) continue;
            const float *restrict kern = wt + t * c, *restrict row = m + src * c;
            float *restrict pw = part + t * c, *restrict go = gm + src * c;
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) {
                pw[j] += yq[j] * row[j];
                go[j] += kern[j] * yq[j];
            }
        }
    }
}

/* gah, gaw: ∂L/∂ah, ∂L/∂aw; ah, aw, stats: the forward's; gxh, gxw: ∂L/∂xh, ∂L/∂xw in the same layout; gwt
 * (k, C), gbias (C), ggn (4 C, gn's order): the parameters' gradients, summed over the batch in double. */
void scsa_smsa_backward(const float *gah, const float *gaw, const float *xh, const float *xw, const float *ah,
                        const float *aw, const float *stats, int64_t b, int64_t c, int64_t h, int64_t w, int cl,
                        const float *wt, const float *bias, int64_t k, const float *gn, float *gxh, float *gxw,
                        float *gwt, float *gbias, float *ggn, float *scratch, int threads) {
    const int64_t per_thread = scsa_smsa_scratch(c, h, w, k), nmax = h > w ? h : w, sums = (k + 5) * c;
    for (int64_t t = 0; t < threads; ++t) memset(scratch + t * per_thread, 0, (size_t)(2 * sums) * sizeof(float));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < b; ++i) {
        double *restrict acc = (double *)(scratch + (int64_t)omp_get_thread_num() * per_thread);
        float *restrict part = (float *)(acc + sums);
        float *m = part + sums, *a = m + nmax * c, *ga = a + nmax * c, *s = ga + nmax * c, *gy = s + nmax * c;
        float *gm = gy + nmax * c;
        memset(part, 0, (size_t)sums * sizeof(float));
        for (int64_t d = 0; d < 2; ++d) {
            const int64_t n = d ? w : h, off = i * n * c;
            const float *seq = rows_of((d ? xw : xh) + off, c, n, cl, m);
            const float *av = rows_of((d ? aw : ah) + off, c, n, cl, a);
            const float *gav = rows_of((d ? gaw : gah) + off, c, n, cl, ga);
            smsa_direction_backward(seq, av, gav, c, n, wt, bias, k, gn + 2 * d * c, stats + (i * 2 + d) * 8,
                                    part, part + (k + 1 + 2 * d) * c, s, gy, gm);
            store_rows(gm, c, n, cl, (d ? gxw : gxh) + off);
        }
#pragma omp simd
        for (int64_t j = 0; j < sums; ++j) acc[j] += part[j];
    }
    for (int64_t j = 0; j < sums; ++j) {
        double v = 0.0;
        for (int64_t t = 0; t < threads; ++t) v += ((const double *)(scratch + t * per_thread))[j];
        float *dst = j < k * c ? gwt + j : (j < (k + 1) * c ? gbias + j - k * c : ggn + j - (k + 1) * c);
        *dst = (float)v;
    }
}

/* ------------------------------------------------------------------------------------------------------
 * PCSA's channel gate on the training path (scsa_pcsa and its backward): steps (6)-(9) from the pooled
 * y, one sample at a time (channel_gate), instead of a torch operation per step (the GroupNorm, q, k, v,
 * the attention and the sigmoid with their backward took 1.2-2.2 ms a block at batch 256 on the pooled
 * maps of a CIFAR ResNet). y: (B, N, C) if cl (the pooled map channels-last), else (B, C, N); par: the 8
 * C-vectors GN_1's weight and bias, wq, bq, wk, bk, wv, bv (zeros for absent biases); ac (B, C) the gate;
 * keep (B, 2 + 2 C): what channel_gate keeps. scratch: scsa_pcsa_scratch(c, n) floats per thread.
 * ------------------------------------------------------------------------------------------------------ */

int64_t scsa_pcsa_scratch(int64_t c, int64_t n) {
    return (3 * 8 * c + 7 * n * c + 3 * c + 15) / 16 * 16; /* the backward's; doubles 64-byte aligned */
}

/* One sample's pooled map as an (N, C) array in buf (channel_gate overwrites it). */
static void load_rows(const float *y, int64_t c, int64_t n, int cl, float *buf) {
    if (cl) memcpy(buf, y, (size_t)(n * c) * sizeof(float));
    else rows_of(y, c, n, 0, buf);
}

void scsa_pcsa(const float *y, int64_t b, int64_t c, int64_t n, int cl, const float *par, float eps, int64_t heads,
               float s, float *ac, float *keep, float *scratch, int threads) {
    const int64_t per_thread = scsa_pcsa_scratch(c, n);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < b; ++i) {
        float *yr = scratch + (int64_t)omp_get_thread_num() * per_thread, *qc = yr + n * c, *k = qc + n * c;
        float *v = k + n * c, *l = v + c;
        load_rows(y + i * n * c, c, n, cl, yr);
        channel_gate(yr, c, n, par, eps, heads, s, qc, k, v, l, ac + i * c, keep + i * (2 + 2 * c));
    }
}

/* The backward of one sample from gac = ∂L/∂ac, with t = GN_1(y)·γ + β (t̂ before the affine), q = t·wq + bq,
 * k = t·wk + bk, v̄ = mean_N(t·wv + bv) recomputed; go = gac·ac·(1 − ac) and per row i (pcsa_kernels.c's
 * backward) P_ij = exp(l_ij − lse_i), ∂v̄_j += go_i·P_ij, u_ij = s·go_i·P_ij·(v̄_j − o_i), ∂q_in = Σ_j u_ij k_jn,
 * ∂k_jn += Σ_i u_ij q_in; then ∂t = ∂q·wq + ∂k·wk + ∂v̄·wv / N and GN_1's backward over the sample's N·C values:
 * ∂y = r·(∂t̂ − mean(∂t̂) − t̂·mean(∂t̂·t̂)), ∂t̂ = ∂t·γ. part: the sample's sums in par's order (8 C). */
static void pcsa_sample_backward(const float *y, const float *gac, const float *ac, const float *kp, int64_t c,
                                 int64_t n, const float *par, int64_t heads, float s, float *part, float *th,
                                 float *qc, float *k, float *gq, float *gk, float *v, float *gv, float *l, float *gy) {
    const float *restrict gw = par, *restrict gb = par + c, *restrict wq = gb + c, *restrict bq = wq + c;
    const float *restrict wk = bq + c, *restrict bk = wk + c, *restrict wv = bk + c, *restrict bv = wv + c;
    const float mu = kp[0], r = kp[1], *o = kp + 2, *lse = kp + 2 + c;
    const int64_t d = c / heads;
    memset(v, 0, (size_t)c * sizeof(float));
    for (int64_t p = 0; p < n; ++p) {
        const float *restrict yr = y + p * c;
        float *restrict tr = th + p * c, *restrict kr = k + p * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
            tr[j] = (yr[j] - mu) * r;
            const float t = tr[j] * gw[j] + gb[j];
            kr[j] = t * wk[j] + bk[j];
            v[j] += t * wv[j] + bv[j];
        }
        for (int64_t j = 0; j < c; ++j) qc[j * n + p] = (tr[j] * gw[j] + gb[j]) * wq[j] + bq[j];
    }
    for (int64_t j = 0; j < c; ++j) v[j] /= (float)n;
    memset(gk, 0, (size_t)(n * c) * sizeof(float));
    memset(gv, 0, (size_t)c * sizeof(float));
    for (int64_t i = 0; i < c; ++i) {
        const int64_t h0 = i / d * d;
        const float *q_i = qc + i * n, *restrict vh = v + h0;
        float *restrict gvh = gv + h0;
        const float a = ac[i], go = gac[i] * a * (1.f - a), oi = o[i];
        logits(q_i, k + h0, d, c, n, s, l);
        exp_shifted(l, d, lse[i]);
        attention_row_backward(l, q_i, k + h0, gk + h0, c, vh, gvh, d, n, s, go, oi, gq + i, c);
    }
    float *restrict pgw = part, *restrict pgb = part + c, *restrict pwq = pgb + c, *restrict pbq = pwq + c;
    float *restrict pwk = pbq + c, *restrict pbk = pwk + c, *restrict pwv = pbk + c, *restrict pbv = pwv + c;
    float s1 = 0.f, s2 = 0.f;
    for (int64_t p = 0; p < n; ++p) {
        const float *restrict tr = th + p * c, *restrict gqr = gq + p * c, *restrict gkr = gk + p * c;
        float *restrict gt = gy + p * c;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t j = 0; j < c; ++j) {
            const float t = tr[j] * gw[j] + gb[j];
            pwq[j] += gqr[j] * t;
            pbq[j] += gqr[j];
            pwk[j] += gkr[j] * t;
            pbk[j] += gkr[j];
            pwv[j] += gv[j] * t / (float)n;
            const float g_t = gqr[j] * wq[j] + gkr[j] * wk[j] + gv[j] * wv[j] / (float)n;
            pgw[j] += g_t * tr[j];
            pgb[j] += g_t;
            gt[j] = g_t * gw[j];  /* ∂t̂ */
            s1 += gt[j];
            s2 += gt[j] * tr[j];
        }
    }
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) pbv[j] += gv[j];
    const float m1 = s1 / (float)(n * c), m2 = s2 / (float)(n * c);
    for (int64_t p = 0; p < n; ++p) {
        const float *restrict tr = th + p * c;
        float *restrict gt = gy + p * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) gt[j] = r * (gt[j] - m1 - tr[j] * m2);
    }
}

/* gac: ∂L/∂ac (B, C); y, ac, keep: the forward's; gy: ∂L/∂y in y's layout; gpar (8 C, par's order): the
 * parameters' gradients, summed over the batch in double. */
void scsa_pcsa_backward(const float *gac, const float *y, const float *ac, const float *keep, int64_t b, int64_t c,
                        int64_t n, int cl, const float *par, int64_t heads, float s, float *gy, float *gpar,
                        float *scratch, int threads) {
    const int64_t per_thread = scsa_pcsa_scratch(c, n), sums = 8 * c;
    for (int64_t t = 0; t < threads; ++t) memset(scratch + t * per_thread, 0, (size_t)(2 * sums) * sizeof(float));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < b; ++i) {
        double *restrict acc = (double *)(scratch + (int64_t)omp_get_thread_num() * per_thread);
        float *restrict part = (float *)(acc + sums);
        float *yr = part + sums, *th = yr + n * c, *qc = th + n * c, *k = qc + n * c, *gq = k + n * c;
        float *gk = gq + n * c, *gt = gk + n * c, *v = gt + n * c, *gv = v + c, *l = gv + c;
        memset(part, 0, (size_t)sums * sizeof(float));
        const float *ys = rows_of(y + i * n * c, c, n, cl, yr);
        pcsa_sample_backward(ys, gac + i * c, ac + i * c, keep + i * (2 + 2 * c), c, n, par, heads, s, part, th, qc,
                             k, gq, gk, v, gv, l, gt);
        store_rows(gt, c, n, cl, gy + i * n * c);
#pragma omp simd
        for (int64_t j = 0; j < sums; ++j) acc[j] += part[j];
    }
    for (int64_t j = 0; j < sums; ++j) {
        double v = 0.0;
        for (int64_t t = 0; t < threads; ++t) v += ((const double *)(scratch + t * per_thread))[j];
        gpar[j] = (float)v;
    }
}

/* ---- The passes over the map and the inference kernel, for float32 and for bfloat16 maps (scsa_map.h). ---- */

#include "map_float32.h"
#include "scsa_map.h"
#include "map_end.h"

#include "map_bf16.h"
#include "scsa_map.h"
#include "map_end.h"
