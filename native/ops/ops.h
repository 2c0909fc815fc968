// The ops of the Llama forward pass, one function per op, llm.c style: raw pointers, shapes in
// a comment. The backward of each op (training) and its CUDA version (kernels/) carry the same
// name with _backward / _cuda, so searching for one word finds all three.
#pragma once
#include <cstdint>

#include "core/ggml_types.h"

namespace lro {

class ThreadPool;

// out[n, d] = x[n, d] / sqrt(mean(x^2) + eps) * weight[d]
void rmsnorm_forward(float* out, const float* x, const float* weight, int64_t n, int64_t d, float eps, ThreadPool& pool);
// dx[n, d] += dL/dx given dout[n, d]; dweight[d] += dL/dweight unless null.
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight, int64_t n,
                      int64_t d, float eps, ThreadPool& pool);

// out[n, d] = row ids[t] of the embedding table (any element type), dequantised.
void embedding_forward(float* out, const int32_t* ids, int64_t n, GgmlType type, const void* table, int64_t d);
// dtable[vocab, d] += dout[n, d] scattered to rows ids[t]. Only for a trainable f32 table: the frozen
// model needs none, dout itself being dL/d(input embeddings).
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t d);

// In place on x[n, n_heads * head_dim]: rotates adjacent pairs (x[2i], x[2i+1]) of the first n_rot
// dims of every head by angle pos[t] * base^(-2i/n_rot) / freq_factors[i] (GGUF/llama.cpp "normal"
// rope; freq_factors may be null = all ones).
void rope_forward(float* x, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                  float base, const float* freq_factors);
// In place on dx[n, n_heads * head_dim]: the transpose of rope_forward's rotation, i.e. the
// rotation by -angle (same angles, same pairs).
void rope_backward(float* dx, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                   float base, const float* freq_factors);

// out[n, d] = silu(gate[n, d]) * up[n, d]
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, int64_t d);
// dgate[n, d] += dout * up * silu'(gate), dup[n, d] += dout * silu(gate)
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n, int64_t d);

// x[n, d] += y[n, d]
void residual_forward(float* x, const float* y, int64_t n, int64_t d);
// dy[n, d] += dout[n, d]: the sum hands dout unchanged to both addends (x's gradient is dout itself).
void residual_backward(float* dy, const float* dout, int64_t n, int64_t d);

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
// Backward of attention_forward for training, on packed f32 sequences: rows are whole sequences laid
// end to end, row t attends rows c in [seq_start[t], t] with pos[c] <= pos[t]. The softmax is
// recomputed from q and k (nothing [n, n] is stored) and differentiated in full:
// dS = P * (dP - sum_c P dP), with dP = dout . v.
// Only rows [q0, n) are queries (a sequence fed in chunks: the rows before are earlier chunks'
// keys, whose own queries are differentiated later).
//   dout, q, dq: [n - q0, n_head * hd]   k, v, dk, dv: [n, n_head_kv * hd]   (dq, dk, dv +=)
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const int64_t* seq_start, const int32_t* pos, int64_t n, int64_t n_head,
                        int64_t n_head_kv, int64_t hd, float scale, ThreadPool& pool, int64_t q0 = 0);

// out[n, d] = LayerNorm(x) * w + b   (biased variance)
void layernorm_forward(float* out, const float* x, const float* w, const float* b, int64_t n, int64_t d, float eps);
// dx[n, d] += dL/dx given dout; dw, db [d] += (unless null)
void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w, int64_t n,
                        int64_t d, float eps);
// out[n] = x * Phi(x), exact (erf)
void gelu_forward(float* out, const float* x, int64_t n);
// dx[n] += dout * (Phi(x) + x phi(x))
void gelu_backward(float* dx, const float* dout, const float* x, int64_t n);

// Picks a token from logits[n_vocab] (banned[i] != 0: never). Greedy (lowest id on ties) when
// temperature <= 0; otherwise softmax(logits / temperature) cut to the top_k best (0: all) and to
// the smallest set of mass >= top_p (outside (0, 1): all), drawn with a splitmix64 value of
// (seed, step) alone, so a rerun or a resumed generation picks the same tokens. -1: every token banned.
struct SampleParams {
  double temperature = 0, top_p = 1;
  int64_t top_k = 0;
  uint64_t seed = 0, step = 0;
};
int32_t sample_token(const float* logits, int64_t n_vocab, const char* banned, const SampleParams& p);

// ---- training-only ops (ops_backward.cpp). The forward product is quants.h matmul:
// y[n, n_out] = x[n, n_in] W^T.

// Input side of matmul: dx[n, n_in] += dy[n, n_out] W, for W of any type. Blocks of block_rows rows
// of W (0: about 4 MB worth) are dequantised and transposed on the fly, never the whole matrix.
void matmul_backward(float* dx, const float* dy, GgmlType wtype, const void* w, int64_t n_out, int64_t n_in,
                     int64_t n, ThreadPool& pool, int64_t block_rows = 0);
// Weight side, for a trainable f32 W: dw[n_out, n_in] += dy[n, n_out]^T x[n, n_in].
void matmul_backward_weight(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in,
                            ThreadPool& pool);

// losses[n] = logsumexp(logits[t, :]) - logits[t, targets[t]]; 0 where targets[t] < 0.
void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab,
                          ThreadPool& pool);
// dlogits[n, V] = scale * (softmax(logits[t]) - onehot(targets[t])), written; rows with targets[t] < 0 are 0.
void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab,
                           float scale, ThreadPool& pool);
// Output head and cross-entropy in chunks of chunk_rows rows (0: auto), so [n, V] logits or
// gradients never exist at once: per chunk logits = x W^T, CE, dlogits, dx += dlogits W.
//   x, dx: [n, d]   W: [n_vocab, d] any type   targets: [n]
// head_crossentropy_forward returns sum_t CE; the backward also does and adds scale * dCE/dx to dx
// (and scale * dCE/dW to dw [n_vocab, d] unless null: a trained f32 head).
double head_crossentropy_forward(const float* x, const int32_t* targets, int64_t n, int64_t d, GgmlType wtype,
                                 const void* w, int64_t n_vocab, int64_t chunk_rows, ThreadPool& pool);
double head_crossentropy_backward(float* dx, const float* x, const int32_t* targets, int64_t n, int64_t d,
                                  GgmlType wtype, const void* w, int64_t n_vocab, float scale, int64_t chunk_rows,
                                  ThreadPool& pool, float* dw = nullptr);

// Activation Oracles steering of rows rows[k] of x[n, d] by vectors[k, d]:
//   term = coef * ||x_p|| * v / max(||v||, eps);  add: x_p += term;  replace: x_p = term.
// terms[K, d] receives the terms unless null.
void inject_forward(float* x, int64_t d, const int64_t* rows, const float* vectors, int64_t n_vec, float coef,
                    float eps, bool replace, float* terms);
// The term is a constant (stop-gradient, as AO's steered.detach()): add passes dx through untouched;
// replace leaves x_p nothing to depend on, so its rows of dx become 0.
void inject_backward(float* dx, int64_t d, const int64_t* rows, int64_t n_vec, bool replace);

}  // namespace lro
