// The ops of the Llama forward pass, one function per op, llm.c style: raw pointers, shapes in
// a comment. The backward of each op (training) and its CUDA version (kernels/) carry the same
// name with _backward / _cuda, so searching for one word finds all three.
#pragma once
#include <cstdint>

#include "ggml_types.h"

namespace lro {

class ThreadPool;

// out[n, d] = x[n, d] / sqrt(mean(x^2) + eps) * weight[d]
void rmsnorm_forward(float* out, const float* x, const float* weight, int64_t n, int64_t d, float eps, ThreadPool& pool);

// out[n, d] = row ids[t] of the embedding table (any element type), dequantised.
void embedding_forward(float* out, const int32_t* ids, int64_t n, GgmlType type, const void* table, int64_t d);

// In place on x[n, n_heads * head_dim]: rotates adjacent pairs (x[2i], x[2i+1]) of the first n_rot
// dims of every head by angle pos[t] * base^(-2i/n_rot) / freq_factors[i] (GGUF/llama.cpp "normal"
// rope; freq_factors may be null = all ones).
void rope_forward(float* x, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                  float base, const float* freq_factors);

// out[n, d] = silu(gate[n, d]) * up[n, d]
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, int64_t d);

// x[n, d] += y[n, d]
void residual_forward(float* x, const float* y, int64_t n, int64_t d);

// Causal grouped-query attention of n query rows against the cached keys/values of their
// sequence. For query t: keys/values are the cells c in [0, n_cells[t]) of its sequence with
// cell_pos[t][c] <= qpos[t].
//   q: [n, n_head * hd]   out: [n, n_head * hd]
//   k_cells[t], v_cells[t]: [n_cells[t], n_head_kv * hd], f32 or f16 (kv_f16)
// Query head h reads kv head h / (n_head / n_head_kv).
struct AttentionRows {
  const void* const* k_cells;
  const void* const* v_cells;
  const int32_t* const* cell_pos;
  const int64_t* n_cells;
  const int32_t* qpos;
};
void attention_forward(float* out, const float* q, const AttentionRows& kv, bool kv_f16, int64_t n, int64_t n_head,
                       int64_t n_head_kv, int64_t hd, float scale, ThreadPool& pool);

}  // namespace lro
