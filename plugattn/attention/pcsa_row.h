/* PCSA's channel attention for one row (SCSA steps 8-9), shared by pcsa_kernels.c (the training path)
 * and scsa_kernels.c (the one-pass inference kernel). Include vexp.h first. The native build's cache
 * key covers the headers a source includes, and theirs (plugattn/_native.py). */
#ifndef PLUGATTN_PCSA_ROW_H
#define PLUGATTN_PCSA_ROW_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* l_j ← exp(l_j − m) for the D tokens. The differences are first clamped at −87 in a loop of their own
 * (exp(−87) ≈ 1.6e-38, far below what a float32 softmax resolves): in the same loop as the exp, GCC
 * splits the clamped case off as a branch and vectorises neither. */
static inline void exp_shifted(float *restrict l, int64_t d, float m) {
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) {
        const float t = l[j] - m;
        l[j] = t < -87.f ? -87.f : t;
    }
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) l[j] = exp_bounded(l[j]);
}

/* Row i's logits l_j = s · Σ_n q_in kt_nj over the D tokens j; kt's rows ld floats apart (ld ≥ D). */
static inline void logits(const float *q_i, const float *kt, int64_t d, int64_t ld, int64_t n, float s, float *l) {
    memset(l, 0, (size_t)d * sizeof(float));
    for (int64_t m = 0; m < n; ++m) {
        const float *restrict row = kt + m * ld;
        const float a = s * q_i[m];
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) l[j] += a * row[j];
    }
}

/* o_i = Σ_j softmax_j(l_ij) v_j for one query row q_i (N) against kt (N, D; rows ld apart) and v (D); l: D
 * floats of scratch; *top ← max_j l_ij and *z ← Σ_j exp(l_ij − top), so that log Σ_j exp(l_ij) is
 * top + log z. The clamp has a loop of its own (see exp_shifted); the exp and both sums share one. */
static inline float attention_row(const float *q_i, const float *kt, int64_t ld, const float *restrict v,
                                  int64_t d, int64_t n, float s, float *restrict l, float *top, float *z) {
    logits(q_i, kt, d, ld, n, s, l);
    float m = l[0];
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < d; ++j) m = l[j] > m ? l[j] : m;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) {
        const float t = l[j] - m;
        l[j] = t < -87.f ? -87.f : t;
    }
    float sum = 0.f, acc = 0.f;
#pragma omp simd reduction(+ : sum, acc)
    for (int64_t j = 0; j < d; ++j) {
        const float e = exp_bounded(l[j]);
        sum += e;
        acc += e * v[j];
    }
    *top = m;
    *z = sum;
    return acc / sum;
}

/* Row i's backward once l holds its P_ij (exp_shifted): with u = ∂L/∂o_i,
 *   ∂v_j += u·P_ij,  t_ij = s·u·P_ij·(v_j − o_i) (left in l),  ∂q_im = Σ_j t_ij kt_mj (gq[m · gq_step]),
 *   ∂kt_mj += t_ij·q_im,
 * over the D tokens j; kt and gkt rows ld floats apart. */
static inline void attention_row_backward(float *restrict l, const float *q_i, const float *kt, float *gkt, int64_t ld,
                                          const float *restrict v, float *restrict gv, int64_t d, int64_t n, float s,
                                          float u, float o_i, float *gq, int64_t gq_step) {
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) {
        const float p = u * l[j];
        gv[j] += p;
        l[j] = s * p * (v[j] - o_i);
    }
    for (int64_t m = 0; m < n; ++m) {
        const float *restrict row = kt + m * ld;
        float *restrict grow = gkt + m * ld;
        const float qm = q_i[m];
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < d; ++j) {
            acc += l[j] * row[j];
            grow[j] += l[j] * qm;
        }
        gq[m * gq_step] = acc;
    }
}

#endif
