/* Ends an instantiation begun by map_float32.h or map_bf16.h. No include guard, on purpose. */
#undef MAP
#undef LD
#undef ST
#undef NAME
#undef SUM_TARGET
#undef STORE_SUM
