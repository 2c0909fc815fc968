// AVX-512 (F, BW, VL, DQ) kernels without VNNI, for AVX-512 CPUs that lack it (Skylake-SP/X).
// Needs no special compiler flags (see quants_avx512_impl.h).
#include "quant/quants_kernels.h"
#if defined(LRO_X86_SIMD)
#define LRO_TABLE_NAME kAvx512Kernels
#include "quant/quants_avx512_impl.h"
#endif
