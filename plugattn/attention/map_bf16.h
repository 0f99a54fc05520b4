/* Instantiates a map header (ham_map.h, scsa_map.h) for bfloat16 maps, as map_float32.h does for float32:
 * the values widened as they are loaded, the results rounded once to nearest even, the kernels' names
 * ending in _bf16; a float32 sum that ends in the map is kept in the float buffer and rounded as it is
 * stored. No include guard, on purpose. */
#include "bf16.h" /* bf16_load, bf16_round, LANES */

#define MAP uint16_t
#define LD(v) bf16_load(v)
#define ST(f) bf16_round(f)
#define NAME(name) name##_bf16
#define SUM_TARGET(dst, buffer) (buffer)
#define STORE_SUM(dst, sum, size)                                                                     \
    do {                                                                                              \
        _Pragma("omp simd") for (int64_t i_ = 0; i_ < (size); ++i_)(dst)[i_] = bf16_round((sum)[i_]); \
    } while (0)
