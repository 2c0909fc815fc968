// What this machine can do at most, measured, so the bench can say how far a kernel is from it:
// memory bandwidth (a STREAM-style triad) and peak FMA, int8 and bf16 dot throughput (register-only
// loops), all on the same thread pool the engine uses.
#pragma once
#include <cstddef>

#include "core/thread_pool.h"

namespace lro {

// Best-of-`reps` triad a[i] = b[i] + s * c[i] over three float arrays of `bytes_per_array` each,
// split across the pool; GB/s counting 3 arrays per pass (as STREAM does).
double measure_triad_gbps(ThreadPool& pool, size_t bytes_per_array, int reps);

// Best-of-`reps` f32 FMA throughput in GFLOP/s (2 flops per lane per FMA) with the widest vectors
// the kernel dispatch uses (AVX-512, AVX2+FMA, or scalar), independent accumulators in registers.
double measure_fma_gflops(ThreadPool& pool, int reps);

// The int8 dot product the integer kernels use (AVX512-VNNI vpdpbusd, or AVX2 maddubs + madd), in
// GOP/s (2 ops per multiply-add); 0 on other CPUs.
double measure_int8_gops(ThreadPool& pool, int reps);

// The bf16 pair dot product (AVX512-BF16 vdpbf16ps) in GFLOP/s; 0 where the kernels do not use it.
double measure_bf16_gflops(ThreadPool& pool, int reps);

}  // namespace lro
