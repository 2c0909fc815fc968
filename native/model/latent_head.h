// The latent head of a latent reasoning model: maps the final-norm state z of the last position
// to the next input embedding e. CODI: e = LayerNorm(W2 · GELU(W1 · z + b1) + b2) (exact GELU,
// affine LayerNorm); Coconut: e = z. Stored in a sidecar GGUF next to the model (general.type
// "latent-head"), or inside the model file itself, under the keys and tensors below.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/ggml_types.h"
#include "core/gguf.h"

namespace lro {

class ThreadPool;

// Metadata keys (sidecar or model file).
constexpr const char* kLatentMode = "lro.latent.mode";                  // "codi" | "coconut"
constexpr const char* kLatentSteps = "lro.latent.steps";                // u32, default number of latent steps
constexpr const char* kLatentBot = "lro.latent.bot_id";                 // i32
constexpr const char* kLatentEot = "lro.latent.eot_id";                 // i32
constexpr const char* kLatentPad = "lro.latent.pad_id";                 // i32, -1 if none
constexpr const char* kLatentPromptFormat = "lro.latent.prompt_format"; // "codi-answer-only" | "codi" | "plain"
constexpr const char* kLatentLnEps = "lro.latent.layer_norm_eps";       // f32
// Coconut only, not in Coconut itself: e = scale x h (default 1). A small model's final states
// are far larger than its token embeddings; the organism feeds them at the embeddings' norm.
constexpr const char* kLatentScale = "lro.latent.scale";                // f32
constexpr const char* kLatentExclude = "lro.latent.exclude_ids";        // i32[]: never decoded (pad, bot, eot)
// Tensors: latent.fc1.weight ne [d, h], latent.fc1.bias [h], latent.fc2.weight ne [h, d],
// latent.fc2.bias [d], latent.ln.weight [d], latent.ln.bias [d] (CODI only).

// The head's weights as its forward and backward see them: the GGUF's tensors (inference) or f32
// copies being trained.
struct LatentHeadWeights {
  bool identity = true;  // Coconut: e = scale x z
  float scale = 1.0f;
  int64_t d = 0, hidden = 0;
  GgmlType w1_type = GgmlType::F32, w2_type = GgmlType::F32;
  const void* w1 = nullptr;  // [hidden, d]
  const void* w2 = nullptr;  // [d, hidden]
  const float* b1 = nullptr;  // [hidden]
  const float* b2 = nullptr;  // [d]
  const float* ln_w = nullptr;
  const float* ln_b = nullptr;
  float ln_eps = 1e-5f;
};
// Gradients of a trained head (+=); W1/W2 must then be f32.
struct LatentHeadGrads {
  float *w1 = nullptr, *b1 = nullptr, *w2 = nullptr, *b2 = nullptr, *ln_w = nullptr, *ln_b = nullptr;
};

// e[n, d] = head(z[n, d])
void latent_head_forward(const LatentHeadWeights& w, const float* z, float* e, int64_t n, ThreadPool& pool);
// dz[n, d] += dL/dz given de[n, d]; the weights' gradients +=. The forward is recomputed from z.
void latent_head_backward(const LatentHeadWeights& w, const LatentHeadGrads& g, const float* z, const float* de,
                          float* dz, int64_t n, ThreadPool& pool);

struct LatentSettings {
  std::string mode = "coconut";
  int64_t steps = 6;
  int32_t bot_id = -1, eot_id = -1, pad_id = -1;
  std::string prompt_format = "plain";
  float ln_eps = 1e-5f;
  float scale = 1.0f;  // Coconut: kLatentScale
  std::vector<int32_t> exclude_ids;
};

class LatentHead {
 public:
  // From a sidecar file (general.type "latent-head").
  static std::shared_ptr<LatentHead> load(const std::string& path, int64_t n_embd);
  // From any GGUF holding the keys (model file); nullptr when it has no lro.latent.mode.
  static std::shared_ptr<LatentHead> from_file(std::shared_ptr<GgufFile> file, int64_t n_embd);

  const LatentSettings& settings() const { return s_; }
  const std::string& path() const { return file_->path(); }
  const GgufFile& file() const { return *file_; }
  int64_t hidden() const { return hidden_; }

  // e[n, d] = head(z[n, d])
  void project(const float* z, float* e, int64_t n, ThreadPool& pool) const;
  LatentHeadWeights weights() const;

 private:
  std::shared_ptr<GgufFile> file_;
  LatentSettings s_;
  int64_t d_ = 0, hidden_ = 0;
  std::vector<float> b1_, b2_, ln_w_, ln_b_;
  const GgufTensorInfo* w1_ = nullptr;
  const GgufTensorInfo* w2_ = nullptr;
};


}  // namespace lro
