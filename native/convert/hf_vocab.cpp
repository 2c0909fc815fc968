#include "convert/hf_vocab.h"

#include <map>
#include <set>

#include "convert/common.h"
#include "convert/json.h"

namespace lro {
namespace convert {

const char* const kCodiPadNames[3] = {"<|pad|>", "<|bot|>", "<|eot_latent|>"};

namespace {

// The Split regex of Meta's Llama 3 tokenizer.json (two spellings of the contraction group).
const char* const kLlama3Regexes[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

bool looks_special(const std::string& t) {
  auto starts = [&](const std::string& p) { return t.compare(0, p.size(), p) == 0; };
  auto ends = [&](const std::string& s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xEF\xBD\x9C") && ends("\xEF\xBD\x9C>")) return true;  // <｜ ... ｜> (deepseek)
  if (starts("<unused") && ends(">")) return true;
  return false;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

std::string detect_pre(const json::Value& tok, const std::string& label) {
  const json::Value* pt = tok.find("pre_tokenizer");
  if (!pt || pt->is_null()) throw ConvertError(label + ": 'pre_tokenizer' is missing; pass the pre-tokenizer name explicitly");
  std::vector<const json::Value*> parts;
  if (json::get_string_or(*pt, "type", "", label) == "Sequence") {
    if (const json::Value* ps = pt->find("pretokenizers"); ps && ps->is_array())
      for (const auto& p : ps->items) parts.push_back(&p);
  } else {
    parts.push_back(pt);
  }
  std::string split_regex;
  bool bytelevel_regex = false;
  for (const json::Value* p : parts) {
    std::string t = json::get_string_or(*p, "type", "", label);
    if (t == "Split") {
      const json::Value* pat = p->find("pattern");
      if (pat && pat->is_object()) split_regex = json::get_string_or(*pat, "Regex", "", label);
    } else if (t == "ByteLevel") {
      bytelevel_regex = json::get_bool_or(*p, "use_regex", true, label);
    }
  }
  for (const char* r : kLlama3Regexes)
    if (split_regex == r) return "llama-bpe";
  if (split_regex.empty() && bytelevel_regex) return "gpt-2";
  throw ConvertError(label + ": pre-tokenizer not recognised (Split regex '" + split_regex +
                     "'); only the Llama 3 ('llama-bpe') and GPT-2 pre-tokenizers are known. Pass the llama.cpp "
                     "pre-tokenizer name explicitly if you know it");
}

// tokenizer_config.json states special tokens as a string or as {"content": ...}.
std::string token_content(const json::Value* v) {
  if (!v || v->is_null()) return "";
  if (v->is_string()) return v->str;
  if (v->is_object()) {
    const json::Value* c = v->find("content");
    if (c && c->is_string()) return c->str;
  }
  return "";
}

}  // namespace

int64_t GgufVocab::find(const std::string& token) const {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == token) return static_cast<int64_t>(i);
  return -1;
}

GgufVocab read_hf_vocab(const std::string& dir, const LlamaConfig& cfg, const VocabOptions& opt) {
  GgufVocab v;
  const std::string tok_path = path_join(dir, "tokenizer.json");
  if (file_exists(path_join(dir, "tokenizer.model")) && !file_exists(tok_path))
    throw ConvertError(dir + ": only a SentencePiece tokenizer.model is present; this converter reads byte-level BPE tokenizer.json files (Llama 3 style)");
  if (!file_exists(tok_path)) throw ConvertError(tok_path + ": missing (the tokenizer is needed for the GGUF vocabulary)");
  const json::Value tok = json::parse_file(tok_path);
  const std::string& L = tok_path;
  const json::Value* model = tok.find("model");
  if (!model || !model->is_object()) throw ConvertError(L + ": 'model' is missing");
  std::string mtype = json::get_string_or(*model, "type", "BPE", L);
  if (mtype != "BPE") throw ConvertError(L + ": model.type is '" + mtype + "'; only BPE tokenizers are supported");
  if (json::get_bool_or(*model, "byte_fallback", false, L))
    throw ConvertError(L + ": model.byte_fallback is true (a SentencePiece-style BPE, e.g. Llama 2); only byte-level BPE (Llama 3 style) is supported");
  if (const json::Value* dec = tok.find("decoder"); dec && dec->is_object()) {
    std::string dt = json::get_string_or(*dec, "type", "", L);
    if (dt != "ByteLevel") throw ConvertError(L + ": decoder.type is '" + dt + "'; byte-level BPE needs a ByteLevel decoder");
  }
  v.pre = opt.pre_override.empty() ? detect_pre(tok, L) : opt.pre_override;

  // id -> text from the BPE vocab and the added tokens (which may repeat vocab entries).
  std::map<int64_t, std::string> by_id;
  const json::Value* vocab = model->find("vocab");
  if (!vocab || !vocab->is_object()) throw ConvertError(L + ": model.vocab must be an object of token -> id");
  for (const auto& m : vocab->members) {
    if (!m.second.is_number() || !m.second.is_int || m.second.integer < 0)
      throw ConvertError(L + ": model.vocab['" + m.first + "'] is not a non-negative integer id");
    auto ins = by_id.emplace(m.second.integer, m.first);
    if (!ins.second) throw ConvertError(L + ": model.vocab maps both '" + ins.first->second + "' and '" + m.first + "' to id " + std::to_string(m.second.integer));
  }
  struct Added {
    std::string content;
    bool special;
  };
  std::map<int64_t, Added> added;
  std::set<std::string> added_contents;
  std::vector<std::pair<std::string, int64_t>> added_list;  // file order, for special-token lookups
  if (const json::Value* at = tok.find("added_tokens"); at && !at->is_null()) {
    if (!at->is_array()) throw ConvertError(L + ": 'added_tokens' must be an array");
    for (size_t i = 0; i < at->items.size(); ++i) {
      const json::Value& a = at->items[i];
      const std::string AL = L + " added_tokens[" + std::to_string(i) + "]";
      int64_t id = json::get_int(a, "id", AL);
      std::string content = json::get_string_or(a, "content", "", AL);
      if (id < 0) throw ConvertError(AL + ": negative id");
      added[id] = {content, json::get_bool_or(a, "special", false, AL)};
      added_contents.insert(content);
      added_list.emplace_back(content, id);
      auto it = by_id.find(id);
      if (it == by_id.end()) by_id[id] = content;
    }
  }
  v.tokenizer_size = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  const int64_t n_vocab = opt.n_vocab < 0 ? v.tokenizer_size : opt.n_vocab;
  if (v.tokenizer_size > n_vocab)
    throw ConvertError(L + ": the tokenizer defines id " + std::to_string(v.tokenizer_size - 1) + " but the model has only " +
                       std::to_string(n_vocab) + " embedding rows");

  v.codi_names = opt.pad_names == PadNames::Codi ||
                 (opt.pad_names == PadNames::Auto && n_vocab - v.tokenizer_size == 3);
  v.tokens.reserve(static_cast<size_t>(n_vocab));
  v.types.reserve(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      int64_t k = i - v.tokenizer_size;
      if (v.codi_names && k >= 0 && k < 3) {
        v.tokens.push_back(kCodiPadNames[k]);
        v.types.push_back(kControl);
      } else {
        v.tokens.push_back("[PAD" + std::to_string(i) + "]");
        v.types.push_back(kUnused);
      }
      continue;
    }
    std::string text = it->second;
    if (added_contents.count(text)) {
      auto ad = added.find(i);
      bool special = ad != added.end() && ad->second.special;
      if (special || looks_special(text)) {
        v.types.push_back(kControl);
      } else {
        text = replace_all(text, "\xE2\x96\x81", " ");  // pre-normalised user-defined spaces, as llama.cpp
        v.types.push_back(kUserDefined);
      }
    } else {
      v.types.push_back(kNormal);
    }
    v.tokens.push_back(std::move(text));
  }

  if (const json::Value* merges = model->find("merges"); merges && merges->is_array()) {
    v.merges.reserve(merges->items.size());
    for (size_t i = 0; i < merges->items.size(); ++i) {
      const json::Value& m = merges->items[i];
      if (m.is_string()) {
        v.merges.push_back(m.str);
      } else if (m.is_array() && m.items.size() == 2 && m.items[0].is_string() && m.items[1].is_string()) {
        // Pair format (tokenizers >= 0.20): spaces inside a part are stored as U+0120, as llama.cpp does.
        v.merges.push_back(replace_all(m.items[0].str, " ", "\xC4\xA0") + " " + replace_all(m.items[1].str, " ", "\xC4\xA0"));
      } else {
        throw ConvertError(L + ": model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  }
  if (v.merges.empty()) v.warnings.push_back(L + ": no merges found; the GGUF tokenizer will not merge anything");

  // Special tokens and add-flags, in the order llama.cpp's SpecialVocab produces them.
  const std::string tc_path = path_join(dir, "tokenizer_config.json");
  json::Value tc;
  bool have_tc = file_exists(tc_path);
  if (have_tc) tc = json::parse_file(tc_path);
  if (have_tc && !tc.is_object()) throw ConvertError(tc_path + ": not a JSON object");
  auto add_flag = [&](const std::string& typ, bool val) {
    for (auto& f : v.add_flags)
      if (f.first == typ) {
        f.second = val;
        return;
      }
    v.add_flags.emplace_back(typ, val);
  };
  auto set_special = [&](const std::string& typ, int64_t id) {
    if (id < 0) return;
    for (auto& s : v.special_ids)
      if (s.first == typ) return;  // first source wins
    if (id >= n_vocab) {
      v.warnings.push_back("special token " + typ + " id " + std::to_string(id) + " is outside the vocabulary; skipped");
      return;
    }
    v.special_ids.emplace_back(typ, id);
  };
  std::string sp_bos = have_tc ? token_content(tc.find("bos_token")) : "";
  std::string sp_eos = have_tc ? token_content(tc.find("eos_token")) : "";
  std::string sp_cls = have_tc ? token_content(tc.find("cls_token")) : "";
  std::string sp_sep = have_tc ? token_content(tc.find("sep_token")) : "";
  if (sp_bos.empty() && !sp_cls.empty()) sp_bos = sp_cls;
  if (sp_eos.empty() && !sp_sep.empty()) sp_eos = sp_sep;
  if (const json::Value* pp = tok.find("post_processor"); pp && pp->is_object()) {
    std::vector<const json::Value*> procs;
    if (const json::Value* ps = pp->find("processors"); ps && ps->is_array())
      for (const auto& p : ps->items) procs.push_back(&p);
    else
      procs.push_back(pp);
    auto special_id_of = [](const json::Value& item) -> std::string {
      const json::Value* st = item.find("SpecialToken");
      if (!st || !st->is_object()) return "";
      const json::Value* id = st->find("id");
      return id && id->is_string() ? id->str : "";
    };
    auto seq_id_of = [](const json::Value& item) -> std::string {
      const json::Value* st = item.find("Sequence");
      if (!st || !st->is_object()) return "";
      const json::Value* id = st->find("id");
      return id && id->is_string() ? id->str : "";
    };
    for (const json::Value* p : procs) {
      if (!p->is_object()) continue;
      std::string type = json::get_string_or(*p, "type", "", L);
      if (type == "RobertaProcessing") {
        add_flag("bos", true);
        add_flag("eos", true);
        add_flag("sep", true);
        continue;
      }
      if (type != "TemplateProcessing") continue;
      const json::Value* single = p->find("single");
      const json::Value* pair = p->find("pair");
      std::string first, last;
      if (single && single->is_array() && single->items.size() > 1) {
        first = special_id_of(single->items.front());
        if (!first.empty()) {
          if (!have_tc) sp_bos = first;
          add_flag("bos", first == sp_bos || first == sp_cls);
        }
        last = special_id_of(single->items.back());
        if (!last.empty()) {
          if (!have_tc) sp_eos = last;
          if (last != sp_eos) v.warnings.push_back(L + ": trailing special token '" + last + "' in the template is not the eos token");
          add_flag("eos", last == sp_eos);
        }
      }
      if (pair && pair->is_array() && !pair->items.empty()) {
        std::vector<const json::Value*> tp;
        for (const auto& it : pair->items) tp.push_back(&it);
        size_t b = (!first.empty() && special_id_of(*tp.front()) == first) ? 1 : 0;
        size_t e = (!last.empty() && special_id_of(*tp.back()) == last) ? tp.size() - 1 : tp.size();
        if (e > b) {
          std::vector<const json::Value*> mid(tp.begin() + static_cast<long>(b), tp.begin() + static_cast<long>(e));
          if (seq_id_of(*mid.front()) == "A" && seq_id_of(*mid.back()) == "B" && mid.size() > 2) {
            std::vector<const json::Value*> inner(mid.begin() + 1, mid.end() - 1);
            bool add_sep = false;
            std::string s0 = special_id_of(*inner[0]);
            if (!s0.empty() && (s0 == sp_sep || s0 == sp_eos) && last.empty()) add_sep = true;
            if (inner.size() == 2) {
              std::string s1 = special_id_of(*inner[1]);
              if (!s1.empty() && (s1 == sp_sep || s1 == sp_eos)) add_sep = true;
            }
            add_flag("sep", add_sep);
          }
        }
      }
    }
  }
  static const char* const kTypes[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  if (have_tc) {
    if (const json::Value* ct = tc.find("chat_template"); ct && ct->is_string()) {
      v.has_chat_template = true;
      v.chat_template = ct->str;
    } else if (file_exists(path_join(dir, "chat_template.jinja"))) {
      v.has_chat_template = true;
      v.chat_template = read_text_file(path_join(dir, "chat_template.jinja"));
    } else if (file_exists(path_join(dir, "chat_template.json"))) {
      json::Value cj = json::parse_file(path_join(dir, "chat_template.json"));
      if (const json::Value* ct2 = cj.find("chat_template"); ct2 && ct2->is_string()) {
        v.has_chat_template = true;
        v.chat_template = ct2->str;
      }
    }
    for (const char* typ : kTypes) {
      const std::string t = typ;
      if (const json::Value* a = tc.find("add_" + t + "_token"); a && a->is_bool()) add_flag(t, a->boolean);
      std::string content = token_content(tc.find(t + "_token"));
      if (content.empty()) continue;
      for (const auto& a : added_list)
        if (a.first == content) {
          set_special(t, a.second);
          break;
        }
    }
  }
  // config.json ids fill in what the tokenizer files left unset.
  for (const char* typ : kTypes) {
    std::string t = typ;
    const json::Value* idv = cfg.raw.find(t + "_token_id");
    if (idv && idv->is_number() && idv->is_int) set_special(t, idv->integer);
  }
  return v;
}

}  // namespace convert
}  // namespace lro
