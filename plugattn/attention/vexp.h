/* A vectorisable exp for the kernels of this folder, included by each C file that needs it (the
 * native build's cache key covers the headers a source includes: plugattn/_native.py). */
#ifndef PLUGATTN_VEXP_H
#define PLUGATTN_VEXP_H
#include <stdint.h>
#include <string.h>

/* exp(x) for −87 ≤ x ≤ 0 (or a rounding above 0), branch-free so that the loops calling it vectorise:
 * x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact product), exp(r) by the degree-6
 * Taylor polynomial of e^r (relative error below 2e-7 on that range), times 2^n built in the exponent
 * bits. n = round(x / ln2) is the truncation of x / ln2 − 1/2 (exact for x / ln2 ≤ 1/2): floorf would
 * keep GCC from vectorising under ISO C's strict floating point. */
static inline float exp_bounded(float x) {
    const int32_t ni = (int32_t)(x * 1.44269504088896341f - 0.5f);
    const float n = (float)ni;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    const int32_t bits = (ni + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);  // the float 2^n; compilers fold this copy into a bit cast
    return p * two_n;
}

/* z ← σ(z) for n values, tmp n floats: e = exp(−min(|z|, 87)) by exp_bounded, σ = 1/(1 + e) for z ≥ 0 and
 * e/(1 + e) below (σ is 1 or 0 in float32 beyond 87); a NaN stays NaN, as torch's sigmoid keeps it. */
static inline void sigmoid_bounded(float *restrict z, float *restrict tmp, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float t = z[i] < 0.f ? z[i] : -z[i];
        tmp[i] = t < -87.f ? -87.f : t;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) tmp[i] = exp_bounded(tmp[i]);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float v = (z[i] >= 0.f ? 1.f : tmp[i]) / (1.f + tmp[i]);
        z[i] = z[i] == z[i] ? v : z[i];
    }
}

#endif
