/* HAM's passes over the feature map, fused, for maps laid out (B, C, N) with N = H·W (or channels-last):
 * the spatial conv and the inference helpers here, the passes over the map in ham_map.h, for float32
 * and for bfloat16 maps.
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

/* Step (9) on the native training path, both groups at once: each group's BatchNorm (one feature), ReLU
 * and the sigmoid, from the spatial conv's output s (2, B, N) (group, sample) into a (B, 2, N):
 *   a[b, g, p] = σ(ReLU((s[g, b, p] − mean_g) · rstd_g · w_g + c_g))
 * affine: w0, c0, w1, c1 (1 and 0 for a norm without affine parameters). With batch_stats the statistics
 * are the batch's, computed here in double: stats = mean0, mean1, rstd0, rstd1, var0, var1 (biased
 * variance, rstd = 1 / sqrt(var + eps)); without, stats holds the running mean and rstd on entry. The exp
 * is exp_bounded's (σ is 1 in float32 beyond 87); a NaN stays NaN, as torch's ReLU and sigmoid keep it. */
void ham_gates(const float *s, int64_t batch, int64_t n, const float *affine, float eps, int batch_stats,
               float *stats, float *a, int threads) {
    if (batch_stats) {
        const double count = (double)(batch * n);
        for (int64_t g = 0; g < 2; ++g) {
            const float *sg = s + g * batch * n;
            double total = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
            for (int64_t b = 0; b < batch; ++b) {
                float part = 0.f;
#pragma omp simd reduction(+ : part)
                for (int64_t p = 0; p < n; ++p) part += sg[b * n + p];
                total += part;
            }
            const double mean = total / count;
            const float m = (float)mean;
            double squares = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : squares)
            for (int64_t b = 0; b < batch; ++b) {
                float part = 0.f;
#pragma omp simd reduction(+ : part)
                for (int64_t p = 0; p < n; ++p) {
                    const float d = sg[b * n + p] - m;
                    part += d * d;
                }
                squares += part;
            }
            const double var = squares / count;
            stats[g] = m;
            stats[2 + g] = (float)(1.0 / sqrt(var + (double)eps));
            stats[4 + g] = (float)var;
        }
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t g = 0; g < 2; ++g) {
            const float *restrict src = s + (g * batch + b) * n;
            float *restrict dst = a + (b * 2 + g) * n;
            const float scale = stats[2 + g] * affine[2 * g], shift = affine[2 * g + 1] - stats[g] * scale;
            /* in loops of their own, as ham_eval's: with the clamp in the exp's loop GCC vectorises neither */
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) { /* -min(ReLU(y), 87), NaN kept */
                const float y = src[p] * scale + shift;
                dst[p] = y > 87.f ? -87.f : (y > 0.f ? -y : (y != y ? y : 0.f));
            }
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) dst[p] = 1.f / (1.f + exp_bounded(dst[p]));
        }
}

/* Its backward, with x̂ = (s − mean) · rstd, y = x̂ · w + c and gy = ga · a (1 − a) · [y > 0]:
 *   gw = Σ gy x̂,  gc = Σ gy  (over the batch and positions, per group),
 *   gs = w · rstd · (gy − (Σ gy + x̂ Σ gy x̂) / (B·N))  with batch statistics,  w · rstd · gy  without.
 * stats as ham_gates left them; grad_affine: gw0, gc0, gw1, gc1 (overwritten). */
void ham_gates_backward(const float *s, const float *a, const float *ga, int64_t batch, int64_t n,
                        const float *affine, int batch_stats, const float *stats, float *gs, float *grad_affine,
                        int threads) {
    for (int64_t g = 0; g < 2; ++g) {
        const float mean = stats[g], rstd = stats[2 + g], w = affine[2 * g], c = affine[2 * g + 1];
        double sum_gy = 0.0, sum_gyx = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : sum_gy, sum_gyx)
        for (int64_t b = 0; b < batch; ++b) {
            const float *restrict src = s + (g * batch + b) * n, *restrict ab = a + (b * 2 + g) * n;
            const float *restrict gb = ga + (b * 2 + g) * n;
            float p1 = 0.f, p2 = 0.f;
#pragma omp simd reduction(+ : p1, p2)
            for (int64_t p = 0; p < n; ++p) {
                const float xh = (src[p] - mean) * rstd, y = xh * w + c;
                const float d = gb[p] * ab[p] * (1.f - ab[p]), gy = y > 0.f ? d : 0.f; /* loads not masked */
                p1 += gy;
                p2 += gy * xh;
            }
            sum_gy += p1;
            sum_gyx += p2;
        }
        grad_affine[2 * g] = (float)sum_gyx;
        grad_affine[2 * g + 1] = (float)sum_gy;
        const float inv = batch_stats ? (float)(1.0 / (double)(batch * n)) : 0.f;
        const float mean_gy = (float)sum_gy * inv, mean_gyx = (float)sum_gyx * inv, k = w * rstd;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t b = 0; b < batch; ++b) {
            const float *restrict src = s + (g * batch + b) * n, *restrict ab = a + (b * 2 + g) * n;
            const float *restrict gb = ga + (b * 2 + g) * n;
            float *restrict out = gs + (g * batch + b) * n;
#pragma omp simd
            for (int64_t p = 0; p < n; ++p) {
                const float xh = (src[p] - mean) * rstd, y = xh * w + c;
                const float d = gb[p] * ab[p] * (1.f - ab[p]), gy = y > 0.f ? d : 0.f; /* loads not masked */
                out[p] = k * (gy - mean_gy - xh * mean_gyx);
            }
        }
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

/* Steps (2)-(3) for one sample: f (C) ← f_add = ½(avg + mx) (+ α·avg + β·mx), as the module sums it. */
static void channel_mix(const float *avg, const float *mx, int64_t c, float alpha, float beta, int adaptive, float *f) {
    for (int64_t ch = 0; ch < c; ++ch) {
        f[ch] = 0.5f * (avg[ch] + mx[ch]);
        if (adaptive) f[ch] = f[ch] + alpha * avg[ch] + beta * mx[ch];
    }
}

/* a (C) ← σ(conv1d(f)): the channel conv of ck taps, zero padding ck/2, no bias, the taps summed in order,
 * every loop over the channels; σ as sigmoid_bounded (vexp.h). */
static void channel_gate(const float *f, int64_t c, const float *cw, int64_t ck, float *a) {
    const int64_t r = ck / 2;
    float fp[c + 2 * r], e[c];
    memset(fp, 0, sizeof fp);
    memcpy(fp + r, f, (size_t)c * sizeof(float));
#pragma omp simd
    for (int64_t ch = 0; ch < c; ++ch) a[ch] = fp[ch] * cw[0];
    for (int64_t j = 1; j < ck; ++j) {
#pragma omp simd
        for (int64_t ch = 0; ch < c; ++ch) a[ch] += fp[ch + j] * cw[j];
    }
    sigmoid_bounded(a, e, c);
}

/* The channel map a_c (B, C) on the training path (ham_channel.py), from the pooled avg, mx (B, C). */
void ham_channel(const float *avg, const float *mx, int64_t batch, int64_t c, const float *cw, int64_t ck, float alpha,
                 float beta, int adaptive, float *a) {
    float f[c];
    for (int64_t b = 0; b < batch; ++b) {
        channel_mix(avg + b * c, mx + b * c, c, alpha, beta, adaptive, f);
        channel_gate(f, c, cw, ck, a + b * c);
    }
}

/* Its backward from g = ∂L/∂a_c, with f recomputed and z the conv's output:
 *   ∂z = g·a·(1 − a),  ∂f[ch] = Σ_j cw[j]·∂z[ch − j + r],  ∂cw[j] = Σ_b,ch ∂z[ch]·f[ch + j − r],
 *   ∂avg = (½ + α)·∂f,  ∂mx = (½ + β)·∂f,  ∂α = Σ ∂f·avg,  ∂β = Σ ∂f·mx  (α = β = 0 and no ∂α, ∂β without
 * the adaptive mix); the parameters' sums in double. gab: ∂α, ∂β. */
void ham_channel_backward(const float *g, const float *avg, const float *mx, const float *a, int64_t batch, int64_t c,
                          const float *cw, int64_t ck, float alpha, float beta, int adaptive, float *gavg, float *gmx,
                          float *gcw, float *gab) {
    const int64_t r = ck / 2;
    float f[c], fp[c + 2 * r], gzp[c + 2 * r], gf[c];
    double acc[ck], ga = 0.0, gb = 0.0;
    memset(acc, 0, sizeof acc);
    memset(fp, 0, sizeof fp);
    memset(gzp, 0, sizeof gzp);
    float *restrict gz = gzp + r; /* ∂z, zero-padded by r on both sides */
    const float ka = adaptive ? 0.5f + alpha : 0.5f, kb = adaptive ? 0.5f + beta : 0.5f;
    for (int64_t b = 0; b < batch; ++b) {
        const float *av = avg + b * c, *mv = mx + b * c, *ab = a + b * c, *gb_ = g + b * c;
        channel_mix(av, mv, c, alpha, beta, adaptive, f);
        memcpy(fp + r, f, (size_t)c * sizeof(float));
#pragma omp simd
        for (int64_t ch = 0; ch < c; ++ch) gz[ch] = gb_[ch] * ab[ch] * (1.f - ab[ch]);
        for (int64_t j = 0; j < ck; ++j) { /* f[ch + j − r] is fp[ch + j] */
            float part = 0.f;
#pragma omp simd reduction(+ : part)
            for (int64_t ch = 0; ch < c; ++ch) part += gz[ch] * fp[ch + j];
            acc[j] += part;
        }
        memset(gf, 0, sizeof gf);
        for (int64_t j = 0; j < ck; ++j) { /* ∂z[ch − j + r] is gzp[ch − j + 2r] */
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) gf[ch] += cw[j] * gzp[ch - j + 2 * r];
        }
        float pa = 0.f, pb = 0.f;
#pragma omp simd reduction(+ : pa, pb)
        for (int64_t ch = 0; ch < c; ++ch) {
            gavg[b * c + ch] = ka * gf[ch];
            gmx[b * c + ch] = kb * gf[ch];
            pa += gf[ch] * av[ch];
            pb += gf[ch] * mv[ch];
        }
        ga += pa;
        gb += pb;
    }
    for (int64_t j = 0; j < ck; ++j) gcw[j] = (float)acc[j];
    gab[0] = adaptive ? (float)ga : 0.f;
    gab[1] = adaptive ? (float)gb : 0.f;
}

/* Steps (1)-(6) for one sample from its pooled avg, mx (C): w1, w2; 0 if the border is a near-tie. */
static int eval_channel(float *avg, float *mx, int64_t c, const float *cw, int64_t ck, float alpha, float beta,
                        int adaptive, int64_t n1, float *w1, float *w2) {
    float *f = w2, *sorted = mx; /* f reuses w2; the sort reuses mx once f is built */
    channel_mix(avg, mx, c, alpha, beta, adaptive, f);
    channel_gate(f, c, cw, ck, avg); /* a_c */
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

/* ---- The training passes over the map, for float32 maps and for bfloat16 maps (ham_map.h). ----
 * Contiguous maps are (B, C, N); channels-last ones (the _cl kernels) x[b, p, c] at (b·N + p)·C + c.
 * The descriptors, maps and their gradients keep the planar layouts ((B, 2, N), (B, N)) either way;
 * only the map-sized tensors x, g, out and gx take the map's layout and element type. */

#include "map_float32.h"
#include "ham_map.h"
#include "map_end.h"

#include "map_bf16.h"
#include "ham_map.h"
#include "map_end.h"
