// What this machine can do at most, measured, so the bench can say how far a kernel is from it:
// memory bandwidth (a STREAM-style triad) and peak FMA throughput (a register-only loop), both
// on the same thread pool the engine uses.
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

}  // namespace lro
