// Tokenizer built from GGUF metadata (tokenizer.ggml.*): byte-level BPE ("gpt2") with the
// "llama-bpe" (Llama 3) and "default" pre-tokenizers, and SentencePiece ("llama").
// Ids must equal llama.cpp's llama_tokenize exactly.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace lro {

class GgufFile;

enum class TokenType : int32_t { UNDEFINED = 0, NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

class Tokenizer {
 public:
  // Throws GgufError naming the missing/invalid key (e.g. "tokenizer.ggml.merges").
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  virtual ~Tokenizer() = default;

  // add_bos: prepend BOS when the vocab says so (tokenizer.ggml.add_bos_token), and EOS at the end
  // when add_eos_token says so (llama.cpp's add_special). parse_special: text spelling a
  // CONTROL / USER_DEFINED token becomes that token; otherwise it is tokenized as plain text.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const = 0;
  // Text of the ids concatenated, as llama_detokenize gives it minus its space clean-up pass
  // (so BPE text round-trips exactly); SentencePiece's dummy-prefix space on the first piece is
  // dropped. render_special: include the text of CONTROL / UNKNOWN tokens.
  virtual std::string decode(const std::vector<int32_t>& ids, bool render_special) const = 0;
  // Bytes of one token (llama.cpp's token_to_piece): may be a partial UTF-8 sequence, so
  // streaming callers should buffer until the bytes form whole characters. CONTROL /
  // UNKNOWN tokens give "" unless render_special. Throws std::out_of_range for a bad id.
  virtual std::string token_to_piece(int32_t id, bool render_special) const = 0;

  const std::string& model() const { return model_; }   // "gpt2" | "llama"
  const std::string& pre() const { return pre_; }       // "llama-bpe" | "default" | ...
  int32_t n_tokens() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& token_text(int32_t id) const { return tokens_.at(id); }
  TokenType token_type(int32_t id) const { return types_.at(id); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }   // -1 if none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // End-of-generation: eos, eot, and tokens named like <|eot_id|>, <|end_of_text|>, <|eom_id|>, </s>.
  bool is_eog(int32_t id) const;
  // -1 if the exact text is not a token.
  int32_t find_token(const std::string& text) const;

 protected:
  std::string model_, pre_;
  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<int32_t> eog_ids_;
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

}  // namespace lro
