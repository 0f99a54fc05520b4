/* Instantiates a map header (ham_map.h, scsa_map.h) for float32 maps: include this, then the map header,
 * then map_end.h. MAP the element type, LD(v) a MAP to float, ST(f) a float to MAP, NAME(name) the
 * kernel's name; SUM_TARGET(dst, buffer) where a float32 sum that ends in the map is kept (dst itself
 * here), STORE_SUM(dst, sum, size) what writes it there (nothing here). No include guard, on purpose. */
#include "bf16.h" /* LANES */

#define MAP float
#define LD(v) (v)
#define ST(f) (f)
#define NAME(name) name
#define SUM_TARGET(dst, buffer) (dst)
#define STORE_SUM(dst, sum, size) ((void)0)
