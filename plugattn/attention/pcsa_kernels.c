/* PCSA's channel self-attention (SCSA steps 8-9) in one pass per row, the logits never stored.
 *
 * Compiled on first use by plugattn/_native.py and called through ctypes by
 * plugattn/attention/pcsa_fast.py, which states the equations and is held to the torch formulation in
 * the tests. Per attention row r (a sample and a head) with D channels as tokens over N pooled
 * positions: q (D, N), kt = kᵀ (N, D), v (D) the mean over positions of v, s the scale;
 *     l_ij = s · Σ_n q_in k_jn,   P_ij = exp(l_ij − lse_i),   o_i = Σ_j P_ij v_j,
 * lse_i = log Σ_j exp(l_ij) (kept for the backward, which recomputes P row by row). Work is split over
 * the rows with OpenMP; every inner loop runs over the D tokens j and vectorises.
 */
#include <math.h>
/* 512-bit vectors where the CPU has them (GCC prefers 256): forward + backward of 32 rows × 256 tokens × 4
 * positions took 3.1 ms against 4.1 (the two builds side by side, Intel AVX-512, 2026-12-03). Without
 * AVX-512 the option changes nothing. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif
#include <stdint.h>
#include <string.h>

#include "vexp.h"
#include "pcsa_row.h"  /* exp_shifted, logits, attention_row */

void pcsa_attention(const float *q, const float *kt, const float *v, int64_t rows, int64_t d, int64_t n,
                    float s, float *o, float *lse, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *qr = q + r * d * n, *ktr = kt + r * n * d, *restrict vr = v + r * d;
        float row_buffer[d];
        float *restrict l = row_buffer;  /* a pointer, not the array: the loops over it vectorise */
        for (int64_t i = 0; i < d; ++i) {
            float top, z;
            o[r * d + i] = attention_row(qr + i * n, ktr, d, vr, d, n, s, l, &top, &z);
            lse[r * d + i] = top + logf(z);
        }
    }
}

/* The backward from g = ∂L/∂o: with t_ij = P_ij · g_i · (v_j − o_i) (the softmax's backward),
 *     ∂L/∂v_j = Σ_i g_i P_ij,   ∂L/∂q_in = s Σ_j t_ij k_jn,   ∂L/∂k_jn = s Σ_i t_ij q_in,
 * the last written transposed, gkt (N, D), like kt. */
void pcsa_attention_backward(const float *g, const float *q, const float *kt, const float *v, const float *o,
                             const float *lse, int64_t rows, int64_t d, int64_t n, float s, float *gq,
                             float *gkt, float *gv, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *qr = q + r * d * n, *ktr = kt + r * n * d, *restrict vr = v + r * d;
        float *restrict gvr = gv + r * d, *gktr = gkt + r * n * d;
        memset(gvr, 0, (size_t)d * sizeof(float));
        memset(gktr, 0, (size_t)(n * d) * sizeof(float));
        float row_buffer[d];
        float *restrict l = row_buffer;  /* a pointer, not the array: the loops over it vectorise */
        for (int64_t i = 0; i < d; ++i) {
            const float *q_i = qr + i * n;
            logits(q_i, ktr, d, d, n, s, l);
            const float gi = g[r * d + i], oi = o[r * d + i], li = lse[r * d + i];
            exp_shifted(l, d, li);  // P_ij
            attention_row_backward(l, q_i, ktr, gktr, d, vr, gvr, d, n, s, gi, oi, gq + (r * d + i) * n, 1);
        }
    }
}
