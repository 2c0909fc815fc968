// One Llama block, forward with its backward right below, for every caller: the inference session
// (KV cache, hooks, frozen adapters), the oracle trainer (packed sequences, trainable LoRA) and the
// latent trainer (one sequence fed in chunks through the latent chain, LoRA or full-parameter).
//
//   x_mid = x_in + o(attn(rope(q(n1(x_in))), rope(k(n1(x_in))), v(n1(x_in))))
//   x_out = x_mid + down(silu(gate(n2(x_mid))) * up(n2(x_mid)))
//
// Every linear is y = W x + sum over its LoRA terms of B (scale * A drop(x)).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/llama_model.h"
#include "ops/ops.h"

namespace lro {

class ThreadPool;

// ---- hook points: the one table of their names (TransformerLens's), exported to JS.
enum class HookPoint { RESID_PRE, ATTN_OUT, RESID_MID, MLP_OUT, RESID_POST, FINAL_NORM };
struct HookPointInfo {
  HookPoint point;
  const char* name;
  bool per_layer;  // named "<name>.<layer>" (final_norm is not)
};
// In the order a forward pass reaches them.
const std::vector<HookPointInfo>& hook_points();
// Called on the engine thread with the batch activation at a point; may modify x in place
// (interventions) or copy rows out (capture). layer is -1 for FINAL_NORM.
using HookFn = std::function<void(HookPoint point, int layer, float* x, int64_t n, int64_t d)>;

// ---- the seven linears of a block (also the LoRA targets), in PEFT's order.
enum BlockLinear { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, kBlockLinears };
const char* block_linear_name(int lin);       // "q", ..., "down"
const char* block_linear_hf_name(int lin);    // "self_attn.q_proj", ..., "mlp.down_proj"
int block_linear_from_name(const std::string& s);  // "q", "q_proj" or "attn_q"; -1 if unknown
const Weight& block_linear_weight(const LlamaLayer& L, int lin);

// A low-rank term on a linear: y += B (scale * A drop(x)).
//   a: [rank, n_in], b: [n_out, rank], any GGML type (f32 when trainable)
struct LoraTerm {
  GgmlType a_type = GgmlType::F32, b_type = GgmlType::F32;
  const void* a = nullptr;
  const void* b = nullptr;
  int64_t rank = 0;
  float scale = 1;
  float* ga = nullptr;       // trainable: dL/dA, dL/dB (+=); then u (= scale * A drop(x)) is kept on the tape
  float* gb = nullptr;
  float dropout = 0;         // on the term's input, training passes only
  uint64_t dropout_key = 0;  // the mask of element e is a pure function of (key, e)
};
// The scale of an adapter file's pairs (llama.cpp's rule: alpha 0 means no alpha / r factor).
float lora_file_scale(float user_scale, float alpha, int64_t rank);

struct Linear {
  const Weight* w = nullptr;
  float* gw = nullptr;  // full-parameter training: dL/dW [n_out, n_in] (+=); W must then be f32
  std::vector<LoraTerm> terms;
};

// y[n, n_out] = W x + terms. u: [n, rank] of the (single) trainable term, if any. row0: the rows'
// first index in their pass (dropout masks are per pass row).
void linear_forward(const Linear& L, const float* x, int64_t n, int64_t row0, float* y, float* u, bool train,
                    ThreadPool& pool);
// Given dy[n, n_out]: dx += dy W + terms' input gradients (dx may be null), gw += dy^T x,
// ga/gb of the trainable term.
void linear_backward(const Linear& L, const float* x, int64_t n, int64_t row0, const float* u, const float* dy, float* dx,
                     bool train, ThreadPool& pool);

struct BlockWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  const float* ffn_norm = nullptr;
  float* g_attn_norm = nullptr;      // full-parameter training (+=)
  float* g_ffn_norm = nullptr;
  Linear lin[kBlockLinears];
};
// The block's weights as the model stores them, no adapters, frozen.
BlockWeights block_weights(const LlamaLayer& L);

// What a block's backward needs from its forward, rows [0, rows) of a pass; a call writes rows
// [row0, row0 + n). q and k are kept after rope (attention reads them so).
struct BlockTape {
  std::vector<float> xn1, q, k, v, att, x_mid, xn2, gate, up, h;
  std::vector<float> u[kBlockLinears];  // [rows, u_rank] of each linear's trainable LoRA term
  int64_t u_rank[kBlockLinears] = {};
  std::vector<float> dk, dv;  // backward: key/value gradients of every row, summed over the chunks' queries
  // Sizes the buffers for `rows` rows (keeps what is there).
  void resize(int64_t rows, const LlamaHparams& hp, const BlockWeights& w);
};

// Buffers block_backward's gradients use, kept by a caller that runs many passes (a trainer), so
// that each pass does not allocate, page-fault and free them again.
struct BlockScratch {
  std::vector<float> dh, dgate, dup, dxn, datt, dq, unused;
};

struct BlockContext;
struct BlockRun;

// Where a block's attention finds keys and values: a session's KV cache, or the tape itself.
class BlockKv {
 public:
  virtual ~BlockKv() = default;
  // Takes the rows' keys (after rope) and values [n, n_head_kv * head_dim], returns the rows' view.
  virtual AttentionRows attend(int layer, const float* k, const float* v, int64_t n, bool* kv_f16) = 0;
  // Backward of the rows' attention: dq [n, q_w] += for the rows' queries (tape.q rows), and
  // tape.dk / tape.dv rows [row0, row0 + n) hold, on return, their keys' complete gradients (this
  // call's queries plus every later chunk's). Default: keys and values are the tape's own rows.
  virtual void attend_backward(const BlockContext& c, const BlockRun& r, BlockTape& tape, const float* datt, float* dq);
};

// The rows of one call.
struct BlockRun {
  int64_t n = 0;                       // rows of this call
  int64_t row0 = 0;                    // their first row in the pass (the tape's rows)
  const int32_t* pos = nullptr;        // positions of every row of the pass [row0 + n]
  const int64_t* seq_start = nullptr;  // packed passes: first row of each row's sequence (null: all 0)
  bool train = false;                  // dropout on
  const HookFn* hook = nullptr;        // RESID_PRE .. RESID_POST, forward only
  BlockScratch* scratch = nullptr;     // backward's buffers (null: block_backward allocates its own)
  // Forward without hooks or training only: when set, only these rows (indices into the call's rows,
  // n_keep of them, n_keep < n) are wanted past attention's keys and values. Their queries, attention,
  // output projection and MLP run alone, and x_out holds them packed [n_keep, n_embd]. A session's
  // last block runs so when only some rows' logits are asked for (as llama.cpp does).
  const int64_t* keep = nullptr;
  int64_t n_keep = 0;
};

struct BlockContext {
  const LlamaHparams& hp;
  const float* rope_freqs;  // null: none
  ThreadPool& pool;
};

// x_in, x_out: [n, n_embd] (they may be the same buffer when nothing needs x_in afterwards).
void block_forward(const BlockContext& c, int layer, const BlockWeights& w, const BlockRun& r, float* x_in, float* x_out,
                   BlockTape& tape, BlockKv& kv);
// dx: [n, n_embd], dL/d(block output) on entry, dL/d(block input) on return when need_dx_in. The
// keys of rows before row0 (earlier chunks) receive their gradients in tape.dk / tape.dv; rows
// [row0, row0 + n) must have all of theirs from later chunks already.
void block_backward(const BlockContext& c, int layer, const BlockWeights& w, const BlockRun& r, const float* x_in,
                    BlockTape& tape, float* dx, bool need_dx_in, BlockKv& kv);

// Keys and values straight from the tape: row t attends the rows of its sequence up to itself.
class TapeKv : public BlockKv {
 public:
  TapeKv(const BlockTape& tape, const BlockRun& r, int64_t kv_width) : tape_(tape), run_(r), kv_w_(kv_width) {}
  AttentionRows attend(int layer, const float* k, const float* v, int64_t n, bool* kv_f16) override;

 private:
  const BlockTape& tape_;
  const BlockRun& run_;
  int64_t kv_w_;
  std::vector<const void*> kp_, vp_;
  std::vector<const int32_t*> cp_;
  std::vector<int64_t> nc_;
};

}  // namespace lro
