// AVX-512 kernels using AVX512-VNNI and AVX512-BF16 (vdpbf16ps for bf16 weights). Needs no special
// compiler flags (see quants_avx512_impl.h).
#include "quant/quants_kernels.h"
#if defined(LRO_X86_SIMD)
#define LRO_VNNI 1
#define LRO_BF16 1
#define LRO_TABLE_NAME kAvx512Bf16Kernels
#include "quant/quants_avx512_impl.h"
#endif
