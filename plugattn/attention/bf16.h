/* bfloat16 ⇄ float32 for the kernels of this folder (a bf16 value is the top half of a float32's bits).
 * Branch-free so that the loops calling them vectorise. Rounding as torch's `.to(torch.bfloat16)`:
 * to nearest, ties to even, a NaN to a quiet NaN (its sign and top mantissa bits kept, as the hardware
 * conversion keeps them; torch's scalar conversion writes 0x7FC0 instead: a NaN either way). */
#ifndef PLUGATTN_BF16_H
#define PLUGATTN_BF16_H
#include <stdint.h>
#include <string.h>

static inline float bf16_load(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f); /* compilers fold this copy into a bit cast */
    return f;
}

static inline uint16_t bf16_round(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t quiet = (bits >> 16) | 0x40u; /* a NaN stays a NaN: rounding could carry it to inf */
    return (uint16_t)(f != f ? quiet : rounded);
}

/* The lanes of a float32 vector. A kernel written once for float32 and bf16 maps gives its reductions
 * over the map this many partial sums (`omp simd simdlen(LANES)`) for either element type (left to
 * itself GCC gives a bf16 loop twice as many), so that a bf16 map sums in the float32 kernel's order and
 * gives its results bit for bit. */
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif

#endif
